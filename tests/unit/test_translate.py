"""A pipeline as an Airflow DAG: tasks, edges, typed params, the XCom wiring, and generated DAG files."""

from __future__ import annotations

import ast
import dataclasses
import re
import sys
from datetime import UTC, datetime

import pytest
from airflow.sdk import DAG

from aml_airflow_provider import dagfile
from aml_airflow_provider.data import DataPath, DataPathComputeBinding, DataReference
from aml_airflow_provider.operators.python_script_step import PythonScriptStepOperator
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, StepSequence
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.translate import PipelineToDag


def _edges(dag: DAG) -> dict[str, set[str]]:
    return {task_id: set(task.upstream_task_ids) for task_id, task in dag.task_dict.items()}


@pytest.fixture
def diamond(workspace, make_step):
    """a -> (b, c) -> d by data, plus e after d (data) and after a (run_after)."""
    left, right = PipelineData("left"), PipelineData("right", output_name="right_out")
    from_b, from_c, from_d = PipelineData("from_b"), PipelineData("from_c"), PipelineData("from_d")
    a = make_step("a", outputs=[left, right], arguments=["--left", left, "--right", right])
    make_step("b", inputs=[left], outputs=[from_b])
    make_step("c", inputs=[right.as_download("right_in")], outputs=[from_c])
    make_step("d", inputs=[from_b, from_c], outputs=[from_d])
    e = make_step("e", inputs=[from_d])
    e.run_after(a)
    return Pipeline(workspace, [e])


def test_one_task_per_step_with_spec_task_ids(diamond):
    dag = PipelineToDag(diamond).to_dag("diamond")

    assert isinstance(dag, DAG)
    assert dag.dag_id == "diamond"
    assert set(dag.task_dict) == {s.task_id for s in diamond.spec.steps} == {"a", "b", "c", "d", "e"}
    assert all(type(task) is PythonScriptStepOperator for task in dag.tasks)


def test_diamond_edges_are_data_producers_plus_run_after(diamond):
    dag = diamond.to_dag("diamond")

    assert _edges(dag) == {"a": set(), "b": {"a"}, "c": {"a"}, "d": {"b", "c"}, "e": {"d", "a"}}


def test_fan_out_edges(workspace, make_step):
    data = PipelineData("data")
    source = make_step("source", outputs=[data])
    sinks = [make_step(f"sink_{i}", inputs=[data.as_input(f"in_{i}")]) for i in range(3)]

    dag = Pipeline(workspace, [source, *sinks]).to_dag("fan_out")

    assert dag.task_dict["source"].downstream_task_ids == {"sink_0", "sink_1", "sink_2"}
    assert _edges(dag) == {"source": set(), "sink_0": {"source"}, "sink_1": {"source"}, "sink_2": {"source"}}


def test_independent_steps_have_no_edges(workspace, make_step):
    dag = Pipeline(workspace, [[make_step("a"), make_step("b")]]).to_dag("parallel")

    assert _edges(dag) == {"a": set(), "b": set()}


def test_step_sequence_edges_in_the_dag(workspace, make_step):
    s1, s2, s3 = make_step("s1"), make_step("s2"), make_step("s3")

    dag = Pipeline(workspace, StepSequence([[s1, s2], s3])).to_dag("sequence")

    assert _edges(dag) == {"s1": set(), "s2": set(), "s3": {"s1", "s2"}}


def test_inputs_wire_to_the_producers_task_and_output_name(diamond):
    dag = diamond.to_dag("diamond")
    a, c, d = dag.task_dict["a"], dag.task_dict["c"], dag.task_dict["d"]

    # The XCom contract: a consumer pulls key `output` from task `step`; the producer pushes one key per output.
    assert [o["name"] for o in a.outputs] == ["left", "right_out"]
    (port,) = c.inputs
    assert (port["name"], port["step"], port["output"], port["mode"]) == ("right_in", "a", "right_out", "download")
    assert port["uri"] is None and port["parameter"] is None
    assert [(p["name"], p["step"], p["output"]) for p in d.inputs] == [
        ("from_b", "b", "from_b"),
        ("from_c", "c", "from_c"),
    ]
    for task in dag.tasks:
        for port in task.inputs:
            producer = dag.task_dict[port["step"]]
            assert port["output"] in {o["name"] for o in producer.outputs}
            assert port["step"] in task.upstream_task_ids


def test_data_reference_and_datapath_inputs_of_the_operator(workspace, make_step, blobstore):
    raw = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw/data.csv")
    path = PipelineParameter("input_path", DataPath(blobstore, "data/in"))
    binding = (path, DataPathComputeBinding(mode="download"))
    step = make_step("reader", inputs=[raw, binding], arguments=[raw, binding])

    task = Pipeline(workspace, [step]).to_dag("reader").task_dict["reader"]

    raw_port, path_port = task.inputs
    assert raw_port["uri"] == "azureml://datastores/workspaceblobstore/paths/raw/data.csv"
    assert raw_port["step"] is None and raw_port["parameter"] is None
    assert path_port["parameter"] == "input_path" and path_port["uri"] is None
    assert path_port["mode"] == "download"
    assert task.pipeline_parameters == ["input_path"]
    assert task.arguments == ["$AZUREML_DATAREFERENCE_raw", "$AZUREML_DATAREFERENCE_input_path"]


def test_operator_carries_the_step_config(workspace, make_step, script_dir):
    step = make_step(
        "Train model",
        outputs=[PipelineData("model")],
        arguments=["--epochs", PipelineParameter("epochs", 3)],
        params={"label": "cats"},
    )

    task = Pipeline(workspace, [step]).to_dag("cfg").task_dict["Train_model"]

    assert task.step_name == "Train model"
    assert task.workspace == workspace.name
    assert task.script_name == "step.py"
    assert task.source_directory == str(script_dir.resolve())
    assert task.arguments == ["--epochs", "$AML_PARAMETER_epochs"]
    assert task.step_params == {"label": "cats"}
    assert task.pipeline_parameters == ["epochs"]
    assert task.outputs == [
        {
            "name": "model",
            "datastore": "workspaceblobstore",
            "mode": "mount",
            "path_on_compute": None,
            "overwrite": False,
            "is_directory": False,
        }
    ]


# -- params -----------------------------------------------------------------------------------------


def test_pipeline_parameters_become_typed_dag_params(workspace, make_step, blobstore):
    path = PipelineParameter("input_path", DataPath(blobstore, "data/in"), description="where the data is")
    binding = (path, DataPathComputeBinding())
    step = make_step(
        "step",
        inputs=[binding],
        arguments=[
            PipelineParameter("count", 3),
            PipelineParameter("rate", 0.5),
            PipelineParameter("flag", False),
            PipelineParameter("label", "x", description="a label"),
            binding,
        ],
    )

    params = Pipeline(workspace, [step]).to_dag("params").params

    assert set(params.keys()) == {"count", "rate", "flag", "label", "input_path", "regenerate_outputs"}
    types = {name: params.get_param(name).schema["type"] for name in params}
    assert types == {
        "count": "integer",
        "rate": "number",
        "flag": "boolean",
        "label": "string",
        "input_path": "string",
        "regenerate_outputs": "boolean",
    }
    assert params["count"] == 3 and type(params["count"]) is int
    assert params["rate"] == 0.5
    assert params["flag"] is False
    assert params["label"] == "x"
    assert params.get_param("label").description == "a label"
    datapath = params.get_param("input_path")
    assert datapath.value == "azureml://datastores/workspaceblobstore/paths/data/in"
    assert re.match(datapath.schema["pattern"], datapath.value)
    assert not re.match(datapath.schema["pattern"], "/local/path")
    assert datapath.description == "where the data is"


def test_bool_param_default_true_stays_a_bool(workspace, make_step):
    dag = Pipeline(workspace, [make_step("s", arguments=[PipelineParameter("flag", True)])]).to_dag("b")

    assert dag.params["flag"] is True
    assert dag.params.get_param("flag").schema["type"] == "boolean"


def test_dag_params_reject_a_wrongly_typed_value(workspace, make_step):
    from airflow.sdk.definitions.param import ParamValidationError

    dag = Pipeline(workspace, [make_step("s", arguments=[PipelineParameter("count", 3)])]).to_dag("v")
    param = dag.params.get_param("count")

    assert param.resolve(value=5) == 5
    with pytest.raises(ParamValidationError):
        param.resolve(value="five")


def test_every_dag_has_the_regenerate_outputs_param(workspace, make_step):
    params = Pipeline(workspace, [make_step("s")]).to_dag("none").params
    assert dict(params) == {"regenerate_outputs": False}
    assert params.get_param("regenerate_outputs").schema["type"] == "boolean"


def test_reserved_parameter_names_are_refused(workspace, make_step):
    from aml_airflow_provider.exceptions import PipelineValidationError

    with pytest.raises(PipelineValidationError, match=r"'regenerate_outputs' .* is reserved"):
        Pipeline(workspace, [make_step("s", arguments=[PipelineParameter("regenerate_outputs", True)])])


# -- Jinja ------------------------------------------------------------------------------------------


def _render(task, context=None):
    task.render_template_fields(context={"ds": "2026-01-01", **(context or {})})
    return task


def test_v1_values_reach_the_script_exactly_as_written(workspace, make_step, blobstore):
    """A v1 pipeline's values were never Jinja templates: tasks built from a spec are not templated."""
    literal = ["{{ ds }}", "{% if %}", "{# note #}", "--fmt={{year}}/{{month}}", "{% endraw %}{{ ds }}", "\n", "x\n"]
    ref = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw")
    step = make_step(
        "s", arguments=literal, params={"tmpl": "{{ ds }}"}, inputs=[ref.as_download(path_on_compute="in_{{ ds }}")]
    )
    task = Pipeline(workspace, [step]).to_dag("jinja").task_dict["s"]
    assert task.template_fields == ()

    _render(task)

    assert task.arguments == literal
    assert task.step_params == {"tmpl": "{{ ds }}"}
    assert task.inputs[0]["path_on_compute"] == "in_{{ ds }}"


def test_hand_written_operator_is_templated(tmp_path):
    from aml_airflow_provider.operators import PythonScriptStepOperator

    task = PythonScriptStepOperator(
        task_id="t", workspace="w", script_name="a.py", source_directory=str(tmp_path), arguments=["--day", "{{ ds }}"]
    )
    assert "arguments" in task.template_fields
    assert _render(task).arguments == ["--day", "2026-01-01"]


# -- DAG arguments ----------------------------------------------------------------------------------


def test_continue_on_step_failure_reaches_every_task(workspace, make_step):
    spec = Pipeline(workspace, [make_step("a"), make_step("b")]).spec
    assert spec.continue_on_step_failure is False

    strict = PipelineToDag(spec).to_dag("stop_on_failure")
    relaxed = PipelineToDag(dataclasses.replace(spec, continue_on_step_failure=True)).to_dag("keep_going")

    # v1's default (False): once a step fails, no other step starts; each task checks this itself.
    assert [task.continue_on_step_failure for task in strict.tasks] == [False, False]
    assert [task.continue_on_step_failure for task in relaxed.tasks] == [True, True]


def test_dag_defaults(workspace, make_step):
    dag = Pipeline(workspace, [make_step("s")], description="my pipeline").to_dag("defaults")

    assert set(dag.tags) == {"aml"}
    assert dag.schedule is None
    assert dag.catchup is False
    assert dag.description == "my pipeline"
    assert "| s | PythonScriptStep |" in dag.doc_md


def test_dag_kwargs_override_defaults(workspace, make_step):
    pipeline = Pipeline(workspace, [make_step("s")])

    start = datetime(2026, 1, 1, tzinfo=UTC)

    dag = pipeline.to_dag("custom", schedule="@daily", tags=["team"], catchup=True, start_date=start)

    assert set(dag.tags) == {"team"}
    assert dag.schedule == "@daily"
    assert dag.catchup is True
    assert dag.start_date == start
    assert PipelineToDag(pipeline).to_dag("custom2", tags=["x", "y"]).tags == {"x", "y"}


# -- generated DAG files ----------------------------------------------------------------------------


def test_dag_file_round_trip(tmp_path, diamond):
    expected = diamond.to_dag("gen_diamond")

    py_path = dagfile.write_dag_file(tmp_path, "gen_diamond", diamond.spec, title="Diamond", dag_kwargs={"tags": ["t"]})
    loaded = dagfile.load_dag_file(py_path)

    assert py_path == tmp_path / dagfile.GENERATED_DIR / "gen_diamond.py"
    assert loaded.dag_id == "gen_diamond"
    assert set(loaded.task_dict) == set(expected.task_dict)
    assert _edges(loaded) == _edges(expected)
    assert set(loaded.tags) == {"t"}
    assert dagfile.read_dag_document(py_path).spec == diamond.spec


def test_dag_file_passes_the_safe_mode_heuristic_and_imports_no_user_script(tmp_path, workspace, script_dir):
    script = "user_script_never_imported.py"
    (script_dir / script).write_text("raise RuntimeError('a user script was imported at parse time')\n")
    step = PythonScriptStep(script, name="user step", source_directory=script_dir)
    spec = Pipeline(workspace, [step]).spec

    py_path = dagfile.write_dag_file(tmp_path, "safe_mode", spec, title="Safe")
    text = py_path.read_text()

    assert "airflow" in text.lower() and "dag" in text.lower()
    imported = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module)
    assert imported == {"aml_airflow_provider.dagfile"}
    assert "user_script_never_imported" not in text
    dag = dagfile.load_dag_file(py_path)
    assert set(dag.task_dict) == {"user_step"}
    assert "user_script_never_imported" not in sys.modules


def test_dag_file_keeps_a_hand_edited_python_file(tmp_path, workspace, make_step):
    spec = Pipeline(workspace, [make_step("s")]).spec
    py_path = dagfile.write_dag_file(tmp_path, "keep", spec, title="Keep")
    py_path.write_text(py_path.read_text() + "# edited\n")

    dagfile.write_dag_file(tmp_path, "keep", spec, title="Keep")

    assert py_path.read_text().endswith("# edited\n")


def test_dag_file_title_with_triple_quotes_stays_valid_python(tmp_path, workspace, make_step):
    spec = Pipeline(workspace, [make_step("s")]).spec

    py_path = dagfile.write_dag_file(tmp_path, "quotes", spec, title='Tricky """ title')

    ast.parse(py_path.read_text())


def test_generated_dag_file_parses_in_a_dagbag(tmp_path, diamond):
    from airflow.dag_processing.dagbag import DagBag

    py_path = dagfile.write_dag_file(tmp_path, "bagged", diamond.spec, title="Bagged", dag_kwargs={"tags": ["bag"]})

    bag = DagBag(dag_folder=py_path.parent, safe_mode=True, load_op_links=False)

    assert bag.import_errors == {}
    assert list(bag.dags) == ["bagged"]
    dag = bag.dags["bagged"]
    assert set(dag.task_dict) == {"a", "b", "c", "d", "e"}
    assert _edges(dag) == _edges(diamond.to_dag("bagged"))
