"""The authoring model as a v1 user sees it: how steps combine into a pipeline and what its spec says."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from aml_airflow_provider.core.compute import LocalCompute
from aml_airflow_provider.data import DataPath, DataPathComputeBinding, DataReference
from aml_airflow_provider.exceptions import StepDefinitionError
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, StepSequence
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.spec import PipelineSpec
from aml_airflow_provider.uris import DatastoreUri

AIRFLOW_TASK_ID = re.compile(r"^[\w.-]+$")


def _names(steps):
    return [step.name for step in steps]


# -- assembling steps -------------------------------------------------------------------------------


def test_nested_list_of_steps_is_flattened(workspace, make_step):
    a, b, c = make_step("a"), make_step("b"), make_step("c")

    pipeline = Pipeline(workspace=workspace, steps=[[a, b, c]])

    assert _names(pipeline.steps) == ["a", "b", "c"]
    assert [s.task_id for s in pipeline.spec.steps] == ["a", "b", "c"]
    assert all(s.upstream == () for s in pipeline.spec.steps)  # a list means "in parallel"


def test_deeply_nested_lists_and_repeated_steps(workspace, make_step):
    a, b, c = make_step("a"), make_step("b"), make_step("c")

    pipeline = Pipeline(workspace, [a, [[b], (c, a)]])

    assert _names(pipeline.steps) == ["a", "b", "c"]


def test_resolve_closure_pulls_in_the_whole_chain(workspace, make_step):
    raw, clean = PipelineData("raw"), PipelineData("clean")
    make_step("extract", outputs=[raw])
    make_step("transform", inputs=[raw], outputs=[clean])
    load = make_step("load", inputs=[clean])
    report = make_step("report")
    report.run_after(load)

    pipeline = Pipeline(workspace, steps=[report])

    assert _names(pipeline.steps) == ["extract", "transform", "load", "report"]
    spec = pipeline.spec
    assert spec.step("transform").upstream == ("extract",)
    assert spec.step("load").upstream == ("transform",)
    assert spec.step("report").upstream == ("load",)
    assert spec.step("report").run_after == ("load",)


def test_pipeline_data_in_steps_means_its_producer(workspace, make_step):
    result = PipelineData("result")
    make_step("producer", outputs=[result])

    pipeline = Pipeline(workspace, [result])

    assert _names(pipeline.steps) == ["producer"]


def test_steps_are_in_upstream_first_order_whatever_the_listing_order(workspace, make_step):
    data = PipelineData("data")
    producer = make_step("producer", outputs=[data])
    consumer = make_step("consumer", inputs=[data])

    pipeline = Pipeline(workspace, [consumer, producer])

    assert _names(pipeline.steps) == ["producer", "consumer"]


def test_step_sequence_orders_steps_in_the_pipeline(workspace, make_step):
    s1, s2, s3 = make_step("s1"), make_step("s2"), make_step("s3")

    pipeline = Pipeline(workspace, StepSequence(steps=[[s1, s2], s3]))

    assert _names(pipeline.steps) == ["s1", "s2", "s3"]
    assert set(pipeline._upstream[s3]) == {s1, s2}


def test_step_sequence_ordering_is_in_the_spec(workspace, make_step):
    s1, s2, s3 = make_step("s1"), make_step("s2"), make_step("s3")

    spec = Pipeline(workspace, StepSequence([[s1, s2], s3])).spec

    assert set(spec.step("s3").upstream) == {"s1", "s2"}
    assert spec.step("s1").upstream == () and spec.step("s2").upstream == ()


def test_run_after_is_recorded_once_per_predecessor(workspace, make_step):
    a, b, c = make_step("a"), make_step("b"), make_step("c")
    c.run_after(a)
    c.run_after(b)
    c.run_after(a)

    spec = Pipeline(workspace, [c]).spec

    assert spec.step("c").run_after == ("a", "b")
    assert c.run_after_steps == [a, b]


# -- spec -------------------------------------------------------------------------------------------


def _build_sample(workspace, script_dir, blobstore):
    """A pipeline using every kind of input, output and parameter (built fresh on every call)."""
    (script_dir / "step.py").write_text("print('hello')\n")
    raw = DataReference(blobstore, path_on_datastore="raw/data.csv")
    features = PipelineData("features", is_directory=True)
    model = PipelineData("model", output_mode="upload", output_path_on_compute="outputs/model")
    path_param = PipelineParameter("input_path", DataPath(blobstore, "data/in"))
    binding = (path_param, DataPathComputeBinding(mode="download", path_on_compute="in"))
    PythonScriptStep(
        "step.py",
        name="prep",
        inputs=[raw, binding],
        outputs=[features],
        arguments=["--raw", raw, "--path", binding, "--out", features, "--n", PipelineParameter("n", 10)],
        source_directory=script_dir,
    )
    train = PythonScriptStep(
        "step.py",
        name="train",
        inputs=[features.as_download("feats", path_on_compute="feats", overwrite=True)],
        outputs=[model],
        arguments=["--lr", PipelineParameter("lr", 0.1), "--flag", PipelineParameter("flag", True)],
        params={"label": PipelineParameter("label", "x"), "fixed": 3},
        source_directory=script_dir,
    )
    report = PythonScriptStep("step.py", name="report", source_directory=script_dir)
    report.run_after(train)
    return Pipeline(workspace, [report], description="sample")


def test_spec_is_deterministic(workspace, script_dir, blobstore):
    first = _build_sample(workspace, script_dir, blobstore).spec
    second = _build_sample(workspace, script_dir, blobstore).spec

    assert first.to_json() == second.to_json()
    assert first.fingerprint == second.fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", first.fingerprint)


def test_fingerprint_changes_with_the_pipeline(workspace, make_step):
    one = Pipeline(workspace, [make_step("a", arguments=["1"])]).spec
    two = Pipeline(workspace, [make_step("a", arguments=["2"])]).spec

    assert one.fingerprint != two.fingerprint


def test_spec_json_round_trip(workspace, script_dir, blobstore):
    spec = _build_sample(workspace, script_dir, blobstore).spec

    again = PipelineSpec.from_json(spec.to_json())

    assert again == spec
    assert again.fingerprint == spec.fingerprint
    assert again.step("report").run_after == ("train",)
    assert {p.name: p.default for p in again.parameters}["flag"] is True


def test_spec_from_another_version_is_rejected(workspace, make_step):
    data = json.loads(Pipeline(workspace, [make_step("a")]).spec.to_json())
    data["spec_version"] = 99

    with pytest.raises(ValueError, match="version 99"):
        PipelineSpec.from_dict(data)


def _datastore_names_in(spec: PipelineSpec) -> set[str]:
    names = {spec.default_datastore}
    for step in spec.steps:
        names |= {o.datastore for o in step.outputs}
        names |= {DatastoreUri.parse(i.uri).datastore for i in step.inputs if i.uri}
    names |= {DatastoreUri.parse(p.default).datastore for p in spec.parameters if p.type == "datapath"}
    return names


def test_spec_names_datastores_but_holds_none_of_their_settings(workspace, script_dir, blobstore, filestore):
    spec = _build_sample(workspace, script_dir, blobstore).spec
    text = spec.to_json()

    assert _datastore_names_in(spec) == {"workspaceblobstore"}
    for store in (blobstore, filestore):
        record = store._record
        assert record.password is None or record.password not in text
        for value in record.extra.values():
            assert str(value) not in text  # e.g. the folder a local datastore lives in
    assert "aml_datastore." not in text  # no connection ids either


def test_spec_parameters_are_sorted_and_typed(workspace, script_dir, blobstore):
    spec = _build_sample(workspace, script_dir, blobstore).spec

    assert [(p.name, p.type, p.default) for p in spec.parameters] == [
        ("flag", "bool", True),
        ("input_path", "datapath", "azureml://datastores/workspaceblobstore/paths/data/in"),
        ("label", "string", "x"),
        ("lr", "float", 0.1),
        ("n", "int", 10),
    ]
    assert spec.step("prep").parameters == ("input_path", "n")
    assert spec.step("train").parameters == ("flag", "label", "lr")
    assert spec.description == "sample"
    assert spec.workspace == workspace.name


# -- arguments --------------------------------------------------------------------------------------


def test_data_objects_in_arguments_become_data_reference_variables(blobstore, make_step):
    raw = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw")
    upstream, other = PipelineData("upstream"), PipelineData("other")
    make_step("producer", outputs=[upstream, other])
    out = PipelineData("out", output_name="result")
    path = PipelineParameter("input_path", DataPath(blobstore, "in"))
    binding = (path, DataPathComputeBinding())
    as_input = upstream.as_input("renamed")
    as_download = other.as_download("local_copy", path_on_compute="copy")

    step = make_step(
        "consumer",
        inputs=[raw, as_input, as_download, binding],
        outputs=[out],
        arguments=[raw, as_input, as_download, binding, path, out],
    )

    assert step.arguments == [
        "$AZUREML_DATAREFERENCE_raw",
        "$AZUREML_DATAREFERENCE_renamed",
        "$AZUREML_DATAREFERENCE_local_copy",
        "$AZUREML_DATAREFERENCE_input_path",
        "$AZUREML_DATAREFERENCE_input_path",
        "$AZUREML_DATAREFERENCE_result",  # the output's port name, as v1
    ]


def test_pipeline_data_input_in_arguments(make_step):
    data = PipelineData("data")
    make_step("producer", outputs=[data], arguments=["--out", data])

    step = make_step("consumer", inputs=[data], arguments=["--in", data])

    assert step.arguments == ["--in", "$AZUREML_DATAREFERENCE_data"]


def test_parameters_and_literals_in_arguments(make_step):
    step = make_step(
        "step",
        arguments=[
            "--epochs",
            PipelineParameter("epochs", 3),
            "--rate",
            PipelineParameter("learning.rate", 0.1),
            "--name",
            PipelineParameter("run-name", "x"),
            7,
            1.5,
            True,
            "--text",
            "$AZUREML_DATAREFERENCE_ is not a port",
        ],
    )

    assert step.arguments == [
        "--epochs",
        "$AML_PARAMETER_epochs",
        "--rate",
        "$AML_PARAMETER_learning_rate",
        "--name",
        "$AML_PARAMETER_run_name",
        "7",
        "1.5",
        "True",
        "--text",
        "$AZUREML_DATAREFERENCE_ is not a port",
    ]
    assert set(step.parameters) == {"epochs", "learning.rate", "run-name"}


def test_argument_text_naming_a_declared_port_is_kept(make_step):
    out = PipelineData("out")
    step = make_step("writer", outputs=[out], arguments=["--out=${AZUREML_DATAREFERENCE_out}/file.csv"])

    assert step.arguments == ["--out=${AZUREML_DATAREFERENCE_out}/file.csv"]


def test_params_with_pipeline_parameters(workspace, make_step):
    step = make_step("step", params={"k": PipelineParameter("my_param", 5), "fixed": 2.5})

    assert step.params == {"k": "$AML_PARAMETER_my_param", "fixed": "2.5"}
    spec = Pipeline(workspace, [step]).spec
    assert spec.step("step").config["params"] == {"k": "$AML_PARAMETER_my_param", "fixed": "2.5"}
    assert spec.step("step").parameters == ("my_param",)
    assert [p.name for p in spec.parameters] == ["my_param"]


def test_arguments_and_script_in_spec_config(workspace, make_step, script_dir):
    step = make_step("step", arguments=["--n", PipelineParameter("n", 1)])

    config = Pipeline(workspace, [step]).spec.step("step").config

    assert config["script_name"] == "step.py"
    assert config["source_directory"] == str(script_dir.resolve())
    assert config["arguments"] == ["--n", "$AML_PARAMETER_n"]


# -- inputs and outputs in the spec -----------------------------------------------------------------


def test_input_specs_say_where_the_data_comes_from(workspace, script_dir, blobstore):
    spec = _build_sample(workspace, script_dir, blobstore).spec

    raw, path = spec.step("prep").inputs
    assert raw.uri == "azureml://datastores/workspaceblobstore/paths/raw/data.csv"
    assert raw.step is None and raw.parameter is None and raw.mode == "mount"
    assert path.parameter == "input_path" and path.uri is None
    assert (path.mode, path.path_on_compute) == ("download", "in")

    (feats,) = spec.step("train").inputs
    assert (feats.name, feats.step, feats.output) == ("feats", "prep", "features")
    assert (feats.mode, feats.path_on_compute, feats.overwrite) == ("download", "feats", True)


def test_output_specs(workspace, script_dir, blobstore):
    spec = _build_sample(workspace, script_dir, blobstore).spec

    (features,) = spec.step("prep").outputs
    assert (features.name, features.mode, features.is_directory) == ("features", "mount", True)
    (model,) = spec.step("train").outputs
    assert (model.name, model.mode, model.path_on_compute) == ("model", "upload", "outputs/model")


def test_output_datastore_falls_back_from_data_to_pipeline_to_workspace(workspace, make_step, blobstore, filestore):
    assert workspace.get_default_datastore().name == "workspaceblobstore"

    def outputs(pipeline_default, data_store):
        data = PipelineData("out", datastore=data_store)
        pipeline = Pipeline(workspace, [make_step("writer", outputs=[data])], default_datastore=pipeline_default)
        return pipeline.spec.default_datastore, pipeline.spec.steps[0].outputs[0].datastore

    assert outputs(None, None) == ("workspaceblobstore", "workspaceblobstore")
    assert outputs(filestore, None) == ("workspacefilestore", "workspacefilestore")
    assert outputs(None, filestore) == ("workspaceblobstore", "workspacefilestore")
    assert outputs(blobstore, filestore) == ("workspaceblobstore", "workspacefilestore")


def test_default_datastore_name_alias(workspace, make_step):
    data = PipelineData("out")
    pipeline = Pipeline(workspace, [make_step("writer", outputs=[data])], default_datastore_name="workspacefilestore")

    assert pipeline.spec.steps[0].outputs[0].datastore == "workspacefilestore"


# -- DataReference ----------------------------------------------------------------------------------


def test_default_data_reference_name_is_deterministic(blobstore, filestore):
    first = DataReference(blobstore, path_on_datastore="raw/data.csv")
    again = DataReference(blobstore, path_on_datastore="/raw//data.csv")
    other_path = DataReference(blobstore, path_on_datastore="raw/other.csv")
    other_store = DataReference(filestore, path_on_datastore="raw/data.csv")

    assert first.data_reference_name == again.data_reference_name
    assert first.data_reference_name != other_path.data_reference_name
    assert first.data_reference_name != other_store.data_reference_name
    assert re.fullmatch(r"\w+", first.data_reference_name, flags=re.ASCII)
    assert str(first) == f"$AZUREML_DATAREFERENCE_{first.data_reference_name}"


@pytest.mark.parametrize("root", [None, "", "/", ".", "./"])
def test_default_data_reference_name_at_the_root_is_the_datastore_name(blobstore, root):
    ref = DataReference(blobstore, path_on_datastore=root)

    assert ref.data_reference_name == "workspaceblobstore"
    assert ref.uri == "azureml://datastores/workspaceblobstore/paths/"


def test_data_reference_as_download_keeps_the_name_and_changes_the_mode(blobstore):
    ref = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw")

    download = ref.as_download(path_on_compute="local/raw", overwrite=True)

    assert (download.name, download.path_on_datastore) == ("raw", "raw")
    assert (download.mode, download.path_on_compute, download.overwrite) == ("download", "local/raw", True)
    assert ref.mode == "mount"  # the original is unchanged
    assert download.as_mount().mode == "mount"
    upload = ref.as_upload(path_on_compute="out")
    assert (upload.name, upload.mode, upload.path_on_compute) == ("raw", "upload", "out")


def test_data_reference_as_download_in_inputs_and_original_in_arguments(workspace, blobstore, make_step):
    ref = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw")
    step = make_step("reader", inputs=[ref.as_download(path_on_compute="raw")], arguments=["--in", ref])

    assert step.arguments == ["--in", "$AZUREML_DATAREFERENCE_raw"]
    (port,) = Pipeline(workspace, [step]).spec.steps[0].inputs
    assert (port.name, port.mode, port.path_on_compute) == ("raw", "download", "raw")


def test_data_reference_child_path(blobstore):
    base = DataReference(blobstore, data_reference_name="base", path_on_datastore="data")

    child = base.path("2024/file.csv")

    assert child.path_on_datastore == "data/2024/file.csv"
    assert child.data_reference_name != "base"


# -- task ids ---------------------------------------------------------------------------------------


def test_task_ids_are_readable(workspace, make_step):
    spec = Pipeline(workspace, [make_step("Prepare data (v2)"), make_step("train.model")]).spec

    assert [s.task_id for s in spec.steps] == ["Prepare_data_v2", "train.model"]
    assert [s.name for s in spec.steps] == ["Prepare data (v2)", "train.model"]


def test_task_ids_are_unique_when_names_sanitize_alike(workspace, make_step):
    spec = Pipeline(workspace, [make_step("prep data"), make_step("prep/data"), make_step("prep_data")]).spec

    assert [s.task_id for s in spec.steps] == ["prep_data", "prep_data_2", "prep_data_3"]


def test_non_latin_step_name_gets_a_stable_hashed_task_id(workspace, make_step):
    name = "데이터 준비"

    first = Pipeline(workspace, [make_step(name)]).spec.steps[0].task_id
    second = Pipeline(workspace, [make_step(name)]).spec.steps[0].task_id
    other = Pipeline(workspace, [make_step("모델 학습")]).spec.steps[0].task_id

    assert first == second == "step_" + hashlib.sha1(name.encode()).hexdigest()[:10]
    assert other != first
    assert AIRFLOW_TASK_ID.fullmatch(first)


def test_task_ids_are_used_for_data_and_run_after_links(workspace, make_step):
    data = PipelineData("data")
    producer = make_step("make data!", outputs=[data])
    consumer = make_step("use data!", inputs=[data])
    consumer.run_after(producer)

    spec = Pipeline(workspace, [consumer]).spec

    assert spec.step("use_data").inputs[0].step == "make_data"
    assert spec.step("use_data").run_after == ("make_data",)
    assert spec.step("use_data").upstream == ("make_data",)


# -- compute target ---------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["local", LocalCompute()])
def test_target_alias_of_compute_target(workspace, script_dir, target):
    (script_dir / "train.py").write_text("print(1)\n")

    step = PythonScriptStep(script_name="train.py", name="train", target=target, source_directory=script_dir)

    assert step.compute_target is target
    spec = Pipeline(workspace, [step]).spec
    assert spec.steps[0].compute == "local"


def test_target_and_compute_target_together_are_rejected(script_dir):
    (script_dir / "train.py").write_text("print(1)\n")
    with pytest.raises(StepDefinitionError, match=r"'train'.*compute_target or target"):
        PythonScriptStep("train.py", name="train", target="local", compute_target="local", source_directory=script_dir)


def test_step_name_defaults_to_script_name(workspace, script_dir):
    (script_dir / "train.py").write_text("print(1)\n")
    step = PythonScriptStep("train.py", source_directory=script_dir)

    assert step.name == "train.py"
    assert Pipeline(workspace, [step]).spec.steps[0].task_id == "train.py"
