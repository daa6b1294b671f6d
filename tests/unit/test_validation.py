"""Bad input is rejected when the object is built, with a specific exception naming what is wrong."""

from __future__ import annotations

import re

import pytest

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.data import DataPath, DataPathComputeBinding, DataReference
from aml_airflow_provider.exceptions import (
    DataPathError,
    DatastoreNotFoundError,
    InvalidNameError,
    PipelineParameterError,
    PipelineValidationError,
    ScriptNotFoundError,
    StepDefinitionError,
    UserErrorException,
)
from aml_airflow_provider.parameters import resolve_parameter_values
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, StepSequence
from aml_airflow_provider.pipeline.steps import PythonScriptStep

# -- cycles -----------------------------------------------------------------------------------------


def test_run_after_cycle_is_a_validation_error_naming_the_steps(workspace, make_step):
    first, second = make_step("first"), make_step("second")
    first.run_after(second)
    second.run_after(first)

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [first, second])

    message = str(info.value)
    assert "Cycle detected" in message
    assert "'first'" in message and "'second'" in message


def test_data_cycle_is_a_validation_error_naming_the_steps(workspace, make_step):
    x, y = PipelineData("x"), PipelineData("y")
    step_a = make_step("step_a", inputs=[x], outputs=[y])
    step_b = make_step("step_b", inputs=[y], outputs=[x])

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [step_a, step_b])

    message = str(info.value)
    assert "Cycle detected" in message
    assert "'step_a'" in message and "'step_b'" in message
    assert any("Cycle" in problem for problem in info.value.problems)


def test_cycle_message_names_only_the_steps_on_the_cycle(workspace, make_step):
    x, y, z = PipelineData("x"), PipelineData("y"), PipelineData("z")
    make_step("step_a", inputs=[x], outputs=[y, z])
    make_step("step_b", inputs=[y], outputs=[x])
    downstream = make_step("downstream", inputs=[z])

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [downstream])  # the closure pulls in the cycle

    message = str(info.value)
    assert "'step_a'" in message and "'step_b'" in message
    assert "downstream" not in message


def test_step_sequence_against_run_after_is_a_cycle(workspace, make_step):
    first, second = make_step("first"), make_step("second")
    first.run_after(second)

    with pytest.raises(PipelineValidationError, match="Cycle detected") as info:
        Pipeline(workspace, StepSequence([first, second]))
    assert "'first'" in str(info.value) and "'second'" in str(info.value)


def test_step_cannot_run_after_itself(make_step):
    step = make_step("lonely")
    with pytest.raises(UserErrorException, match="'lonely' cannot run after itself"):
        step.run_after(step)


# -- data wiring ------------------------------------------------------------------------------------


def test_pipeline_data_consumed_but_never_produced(workspace, make_step):
    orphan = PipelineData("orphan")
    consumer = make_step("consumer", inputs=[orphan])

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [consumer])

    message = str(info.value)
    assert "'consumer'" in message and "'orphan'" in message
    assert "no step produces it" in message


def test_pipeline_data_produced_by_two_steps_fails_at_second_step(make_step):
    shared = PipelineData("shared")
    make_step("first_writer", outputs=[shared])

    with pytest.raises(StepDefinitionError) as info:
        make_step("second_writer", outputs=[shared])

    message = str(info.value)
    assert "'shared'" in message
    assert "'first_writer'" in message and "'second_writer'" in message


def test_data_reference_in_arguments_but_not_in_inputs(blobstore, make_step):
    raw = DataReference(blobstore, data_reference_name="raw_data", path_on_datastore="raw")

    with pytest.raises(StepDefinitionError) as info:
        make_step("reader", arguments=["--in", raw])

    assert "Input raw_data appears in arguments list but is not in the input list" in str(info.value)
    assert "'reader'" in str(info.value)


def test_input_port_binding_in_arguments_but_not_in_inputs(make_step):
    data = PipelineData("features")
    make_step("producer", outputs=[data])

    with pytest.raises(StepDefinitionError, match="Input renamed appears in arguments list but is not in the input"):
        make_step("consumer", inputs=[data], arguments=[data.as_input("renamed")])


def test_pipeline_data_in_arguments_that_is_neither_input_nor_output(make_step):
    stray = PipelineData("stray")

    with pytest.raises(StepDefinitionError) as info:
        make_step("confused", arguments=["--out", stray])

    message = str(info.value)
    assert "'confused'" in message and "'stray'" in message
    assert "neither the inputs nor the outputs" in message


def test_datapath_parameter_in_arguments_but_not_in_inputs(blobstore, make_step):
    param = PipelineParameter("input_path", DataPath(blobstore, "data/in"))

    with pytest.raises(StepDefinitionError, match="'input_path'") as info:
        make_step("reader", arguments=[(param, DataPathComputeBinding())])
    assert "'reader'" in str(info.value)


def test_argument_text_naming_an_unknown_port_is_rejected(make_step):
    with pytest.raises(StepDefinitionError, match="AZUREML_DATAREFERENCE_ghost") as info:
        make_step("typo", arguments=["--in", "$AZUREML_DATAREFERENCE_ghost"])
    assert "'typo'" in str(info.value)


def test_none_argument_is_rejected(make_step):
    with pytest.raises(StepDefinitionError, match=r"'nones'.*None"):
        make_step("nones", arguments=["--flag", None])


def test_non_datapath_parameter_cannot_be_an_input(make_step):
    with pytest.raises(StepDefinitionError, match="'count'"):
        make_step("reader", inputs=[PipelineParameter("count", 3)])


# -- port names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["my-data", "my data", "données", "数据", "", "a" * 256, "a.b"])
def test_invalid_pipeline_data_names(name):
    with pytest.raises(InvalidNameError) as info:
        PipelineData(name)
    assert "PipelineData name" in str(info.value)
    if name and len(name) < 40:
        assert repr(name) in str(info.value)


def test_invalid_pipeline_data_output_name():
    with pytest.raises(InvalidNameError, match="output_name of PipelineData 'good'"):
        PipelineData("good", output_name="bad-name")


@pytest.mark.parametrize("name", ["raw-data", "raw data", "rohdaten_ä", ""])
def test_invalid_data_reference_names(blobstore, name):
    with pytest.raises(InvalidNameError) as info:
        DataReference(blobstore, data_reference_name=name, path_on_datastore="raw")
    assert "data_reference_name" in str(info.value)


def test_invalid_input_name_of_binding():
    with pytest.raises(InvalidNameError, match="input_name"):
        PipelineData("ok").as_input("not ok")


def test_duplicate_input_names_in_one_step(blobstore, make_step):
    first = DataReference(blobstore, data_reference_name="data", path_on_datastore="one")
    second = DataReference(blobstore, data_reference_name="data", path_on_datastore="two")

    with pytest.raises(InvalidNameError) as info:
        make_step("reader", inputs=[first, second])

    message = str(info.value)
    assert "'reader'" in message and "'data'" in message
    assert "two inputs" in message


def test_duplicate_output_names_in_one_step(make_step):
    with pytest.raises(InvalidNameError, match=r"'writer'.*two outputs are named 'out'"):
        make_step("writer", outputs=[PipelineData("out"), PipelineData("other", output_name="out")])


def test_input_named_like_an_output_is_renamed_for_python_script_step(blobstore, make_step):
    source = DataReference(blobstore, data_reference_name="table", path_on_datastore="in")
    result = PipelineData("table")

    step = make_step("transform", inputs=[source], outputs=[result])

    assert [port.name for port in step._inputs] == ["INPUT_table"]
    assert [out.output_name for out in step.outputs] == ["table"]


def test_input_named_like_an_output_is_an_error_without_collision_fixing(blobstore, make_step):
    from aml_airflow_provider.pipeline.core.builder import PipelineStep

    class StrictStep(PipelineStep):
        def _to_spec(self, ctx):  # pragma: no cover - never built
            raise NotImplementedError

    source = DataReference(blobstore, data_reference_name="table", path_on_datastore="in")
    with pytest.raises(InvalidNameError, match=r"'strict'.*input 'table' has the name of an output"):
        StrictStep("strict", inputs=[source], outputs=[PipelineData("table")])


def test_renamed_input_pipeline_data_resolves_in_arguments(make_step):
    upstream = PipelineData("table")
    make_step("producer", outputs=[upstream])
    result = PipelineData("table")  # same name as the input: the input becomes INPUT_table

    step = make_step("transform", inputs=[upstream], outputs=[result], arguments=[upstream, result])

    assert step.arguments == ["$AZUREML_DATAREFERENCE_INPUT_table", "$AZUREML_DATAREFERENCE_table"]


def test_renamed_input_data_reference_resolves_in_arguments(blobstore, make_step):
    source = DataReference(blobstore, data_reference_name="table", path_on_datastore="in")
    result = PipelineData("table")

    # SDK v1 rewrote the argument to the renamed input binding.
    step = make_step("transform", inputs=[source], outputs=[result], arguments=["--in", source, "--out", result])

    assert step.arguments == ["--in", "$AZUREML_DATAREFERENCE_INPUT_table", "--out", "$AZUREML_DATAREFERENCE_table"]


def test_renamed_input_port_binding_resolves_in_arguments(make_step):
    upstream = PipelineData("table")
    make_step("producer", outputs=[upstream])
    binding = upstream.as_download()
    result = PipelineData("table")

    step = make_step("transform", inputs=[binding], outputs=[result], arguments=[binding, result])

    assert step.arguments == ["$AZUREML_DATAREFERENCE_INPUT_table", "$AZUREML_DATAREFERENCE_table"]


# -- step names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("bad\nname", "control characters"),
        ("tab\tname", "control characters"),
        ("zero\u200bwidth", "control characters"),
        ("x" * 256, "longer than 255"),
    ],
)
def test_invalid_step_names(make_step, name, fragment):
    with pytest.raises(InvalidNameError, match=fragment) as info:
        make_step(name)
    assert "step name" in str(info.value)


def test_step_name_of_255_characters_is_accepted(make_step):
    assert make_step("x" * 255).name == "x" * 255


def test_duplicate_step_names_in_one_pipeline(workspace, make_step):
    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [make_step("train"), make_step("train")])
    assert "Step name 'train' is used by 2 steps" in str(info.value)


# -- pipeline parameters ----------------------------------------------------------------------------


def test_same_parameter_name_with_two_defaults_in_one_step_is_rejected(make_step):
    with pytest.raises(UserErrorException) as info:
        make_step("trainer", arguments=[PipelineParameter("epochs", 3), PipelineParameter("epochs", 5)])

    message = str(info.value)
    assert "'trainer'" in message and "'epochs'" in message
    assert "3" in message and "5" in message


def test_same_parameter_name_with_two_defaults_in_one_step_is_a_parameter_error(make_step):
    with pytest.raises(PipelineParameterError, match="'epochs'"):
        make_step("trainer", arguments=[PipelineParameter("epochs", 3)], params={"e": PipelineParameter("epochs", 5)})


def test_same_parameter_name_with_two_defaults_across_steps(workspace, make_step):
    first = make_step("first", arguments=[PipelineParameter("epochs", 3)])
    second = make_step("second", params={"n": PipelineParameter("epochs", 5)})

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [first, second])

    assert "Pipeline parameters with same name 'epochs' but different values: 3 and 5" in str(info.value)


def test_same_parameter_name_with_same_default_across_steps_is_one_parameter(workspace, make_step):
    first = make_step("first", arguments=[PipelineParameter("epochs", 3)])
    second = make_step("second", params={"n": PipelineParameter("epochs", 3)})

    pipeline = Pipeline(workspace, [first, second])

    assert [p.name for p in pipeline.spec.parameters] == ["epochs"]


def test_parameter_with_same_name_int_and_bool_default_conflict(workspace, make_step):
    # True == 1 in Python, but they are different parameter types.
    first = make_step("first", arguments=[PipelineParameter("flag", 1)])
    second = make_step("second", arguments=[PipelineParameter("flag", True)])

    with pytest.raises(PipelineValidationError, match="'flag'"):
        Pipeline(workspace, [first, second])


def test_parameters_whose_environment_names_collide(workspace, make_step):
    step = make_step("step", arguments=[PipelineParameter("learning.rate", 0.1), PipelineParameter("learning_rate", 1)])

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [step])

    message = str(info.value)
    assert "'learning.rate'" in message and "'learning_rate'" in message
    assert "AML_PARAMETER_learning_rate" in message


@pytest.mark.parametrize("default", [[1, 2], {"a": 1}, None, (1, 2), b"bytes"])
def test_unsupported_parameter_default_types(default):
    with pytest.raises(PipelineParameterError) as info:
        PipelineParameter("my_param", default)
    assert "'my_param'" in str(info.value)
    assert "not supported" in str(info.value)


@pytest.mark.parametrize("default", ["line one\nline two", "carriage\rreturn"])
def test_multi_line_string_parameter_defaults(default):
    with pytest.raises(PipelineParameterError, match=r"'notes'.*multi-line"):
        PipelineParameter("notes", default)


def test_nul_byte_in_parameter_default():
    with pytest.raises(PipelineParameterError, match=r"'text'.*NUL"):
        PipelineParameter("text", "a\x00b")


@pytest.mark.parametrize("name", ["", "-leading", "has space", "ünïcode", ".dot"])
def test_invalid_parameter_names(name):
    with pytest.raises(InvalidNameError, match="pipeline parameter name"):
        PipelineParameter(name, 1)


# -- scripts ----------------------------------------------------------------------------------------


def test_missing_script_with_source_directory_fails_at_step_construction(script_dir):
    with pytest.raises(ScriptNotFoundError) as info:
        PythonScriptStep("missing.py", name="train", source_directory=script_dir)

    message = str(info.value)
    assert "[train]" in message
    assert str(script_dir / "missing.py") in message


def test_missing_source_directory_fails_at_step_construction(tmp_path):
    with pytest.raises(ScriptNotFoundError, match="not a folder"):
        PythonScriptStep("train.py", name="train", source_directory=tmp_path / "nowhere")


def test_missing_script_with_default_source_directory_fails_at_pipeline_construction(workspace, script_dir):
    step = PythonScriptStep("missing.py", name="train")  # no source_directory: nothing to check yet

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [step], default_source_directory=script_dir)

    message = str(info.value)
    assert "[train]" in message
    assert str(script_dir / "missing.py") in message


def test_script_found_in_default_source_directory(workspace, script_dir):
    (script_dir / "train.py").write_text("print(1)\n")
    step = PythonScriptStep("train.py", name="train")

    pipeline = Pipeline(workspace, [step], default_source_directory=script_dir)

    assert pipeline.spec.steps[0].config["source_directory"] == str(script_dir.resolve())


@pytest.mark.parametrize("script", ["../escape.py", "/abs/train.py", ""])
def test_script_name_outside_source_directory(script_dir, script):
    with pytest.raises(StepDefinitionError, match="script_name"):
        PythonScriptStep(script, name="train", source_directory=script_dir)


# -- datastore paths and names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("../outside", re.escape("'..'")),
        ("data/../../outside", re.escape("'..'")),
        ("data/\x00evil", "NUL"),
        ("data\\windows", "'/'"),
    ],
)
def test_bad_path_on_datastore_for_data_reference(blobstore, path, fragment):
    with pytest.raises(DataPathError, match=fragment) as info:
        DataReference(blobstore, data_reference_name="raw", path_on_datastore=path)
    assert "path_on_datastore" in str(info.value)


@pytest.mark.parametrize("path", ["../outside", "a/\x00b", "a\\b"])
def test_bad_path_on_datastore_for_data_path(blobstore, path):
    with pytest.raises(DataPathError, match="path_on_datastore"):
        DataPath(blobstore, path)


def test_child_data_reference_cannot_escape_the_datastore(blobstore):
    base = DataReference(blobstore, data_reference_name="base", path_on_datastore="data")
    with pytest.raises(DataPathError, match=re.escape("'..'")):
        base.path("../../etc")


def test_unknown_datastore_lists_known_ones(workspace):
    with pytest.raises(DatastoreNotFoundError) as info:
        Datastore(workspace, "nope")

    message = str(info.value)
    assert "'nope'" in message
    assert "workspaceblobstore" in message and "workspacefilestore" in message


def test_unknown_default_datastore_name_of_pipeline(workspace, make_step):
    with pytest.raises(DatastoreNotFoundError, match="'nope'"):
        Pipeline(workspace, [make_step("a")], default_datastore_name="nope")


def test_invalid_datastore_name(workspace):
    with pytest.raises(InvalidNameError, match="datastore name"):
        Datastore(workspace, "bad-name")


def test_data_reference_needs_a_datastore():
    with pytest.raises(UserErrorException, match=r"DataReference 'raw'.*must be a Datastore"):
        DataReference("workspaceblobstore", data_reference_name="raw")


def test_data_reference_mode_is_checked(blobstore):
    with pytest.raises(UserErrorException, match=r"'raw'.*mode 'stream'"):
        DataReference(blobstore, data_reference_name="raw", path_on_datastore="x", mode="stream")


# -- closure ----------------------------------------------------------------------------------------


def test_resolve_closure_false_with_missing_producer(workspace, make_step):
    data = PipelineData("data")
    producer = make_step("producer", outputs=[data])
    consumer = make_step("consumer", inputs=[data])

    with pytest.raises(PipelineValidationError) as info:
        Pipeline(workspace, [consumer], resolve_closure=False)

    message = str(info.value)
    assert "'producer'" in message and "'consumer'" in message
    assert "resolve_closure" in message
    # Listing the producer too is fine.
    assert Pipeline(workspace, [producer, consumer], resolve_closure=False).validate() == []


def test_resolve_closure_false_with_missing_run_after_step(workspace, make_step):
    before, after = make_step("before"), make_step("after")
    after.run_after(before)

    with pytest.raises(PipelineValidationError, match="'before' is in its run_after list of step 'after'"):
        Pipeline(workspace, [after], resolve_closure=False)


def test_pipeline_needs_steps(workspace):
    with pytest.raises(UserErrorException, match="at least one step"):
        Pipeline(workspace, [])


def test_pipeline_rejects_non_steps(workspace):
    with pytest.raises(UserErrorException, match="not str"):
        Pipeline(workspace, ["train.py"])


def test_pipeline_data_in_steps_without_producer(workspace):
    with pytest.raises(UserErrorException, match="'lonely'"):
        Pipeline(workspace, [PipelineData("lonely")])


def test_validate_returns_no_problems_for_a_valid_pipeline(workspace, make_step, blobstore):
    raw = DataReference(blobstore, data_reference_name="raw", path_on_datastore="raw")
    data = PipelineData("data")
    first = make_step("first", inputs=[raw], outputs=[data], arguments=[raw, data, PipelineParameter("n", 1)])
    second = make_step("second", inputs=[data], arguments=[data])

    pipeline = Pipeline(workspace, [first, second])

    assert pipeline.validate() == []


# -- side effects of a rejected step ----------------------------------------------------------------


def test_rejected_step_does_not_claim_its_outputs(script_dir, make_step):
    result = PipelineData("result")
    with pytest.raises(ScriptNotFoundError):
        PythonScriptStep("tain.py", name="train", outputs=[result], source_directory=script_dir)  # typo

    (script_dir / "train.py").write_text("print(1)\n")
    fixed = PythonScriptStep("train.py", name="train", outputs=[result], source_directory=script_dir)

    assert result.producer is fixed


def test_output_conflict_does_not_claim_the_other_outputs(make_step):
    taken, free = PipelineData("taken"), PipelineData("free")
    make_step("owner", outputs=[taken])
    with pytest.raises(StepDefinitionError):
        make_step("greedy", outputs=[free, taken])

    assert free.producer is None


# -- submitted parameter values ---------------------------------------------------------------------


@pytest.fixture
def typed_spec(workspace, make_step, blobstore):
    params = [
        PipelineParameter("count", 3),
        PipelineParameter("rate", 0.5),
        PipelineParameter("flag", False),
        PipelineParameter("label", "x"),
    ]
    path = PipelineParameter("input_path", DataPath(blobstore, "data/in"))
    binding = (path, DataPathComputeBinding())
    step = make_step("step", inputs=[binding], arguments=[*params, binding])
    return Pipeline(workspace, [step]).spec


def test_resolve_parameter_values_uses_defaults(typed_spec):
    assert resolve_parameter_values(typed_spec, {}) == {
        "count": 3,
        "rate": 0.5,
        "flag": False,
        "label": "x",
        "input_path": "azureml://datastores/workspaceblobstore/paths/data/in",
    }


def test_unknown_parameter_value_is_rejected(typed_spec):
    with pytest.raises(PipelineParameterError) as info:
        resolve_parameter_values(typed_spec, {"epochs": 3})
    message = str(info.value)
    assert "Pipeline parameter with name epochs does not exist" in message
    assert "count" in message  # the known ones are listed


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("count", "3"),
        ("count", True),
        ("count", 3.5),
        ("rate", "x"),
        ("rate", True),
        ("rate", float("nan")),
        ("flag", 1),
        ("flag", "true"),
        ("label", 5),
        ("label", "two\nlines"),
        ("input_path", "not a uri"),
        ("input_path", "azureml://datastores/workspaceblobstore/paths/../escape"),
        ("input_path", 5),
    ],
)
def test_wrongly_typed_parameter_values_are_rejected(typed_spec, name, value):
    with pytest.raises(PipelineParameterError) as info:
        resolve_parameter_values(typed_spec, {name: value})
    assert f"'{name}'" in str(info.value)


def test_correctly_typed_parameter_values_are_accepted(typed_spec, blobstore):
    values = resolve_parameter_values(
        typed_spec,
        {"count": 7, "rate": 2, "flag": True, "label": "y", "input_path": DataPath(blobstore, "other")},
    )
    assert values == {
        "count": 7,
        "rate": 2.0,
        "flag": True,
        "label": "y",
        "input_path": "azureml://datastores/workspaceblobstore/paths/other",
    }
    assert isinstance(values["rate"], float)


def test_datapath_value_from_v1_rest_assignment(typed_spec):
    values = resolve_parameter_values(
        typed_spec, {"input_path": {"DataStoreName": "workspacefilestore", "RelativePath": "a/b"}}
    )
    assert values["input_path"] == "azureml://datastores/workspacefilestore/paths/a/b"


def test_parameter_values_from_strings_are_converted(typed_spec):
    values = resolve_parameter_values(
        typed_spec,
        {"count": "3", "rate": "1.5", "flag": "true", "label": "text"},
        from_strings=True,
    )
    assert values["count"] == 3 and type(values["count"]) is int
    assert values["rate"] == 1.5
    assert values["flag"] is True
    assert values["label"] == "text"
    assert resolve_parameter_values(typed_spec, {"flag": "False"}, from_strings=True)["flag"] is False


@pytest.mark.parametrize(("name", "text"), [("count", "abc"), ("count", "3.5"), ("rate", "x"), ("flag", "maybe")])
def test_parameter_values_from_bad_strings_are_rejected(typed_spec, name, text):
    with pytest.raises(PipelineParameterError) as info:
        resolve_parameter_values(typed_spec, {name: text}, from_strings=True)
    assert f"'{name}'" in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("text", ["1_000", "٣", " 3 4", "0x10"])
def test_integer_parameters_from_text_accept_plain_ascii_digits_only(workspace, make_step, text):

    pipeline = Pipeline(workspace, [make_step("s", arguments=[PipelineParameter("count", 1)])])
    with pytest.raises(PipelineParameterError, match="'count' is of type int"):
        resolve_parameter_values(pipeline.spec, {"count": text}, from_strings=True)
    assert resolve_parameter_values(pipeline.spec, {"count": " -12 "}, from_strings=True) == {"count": -12}


@pytest.mark.parametrize("dag_id", ["../escape", "a/b", ".hidden", "", "x" * 251])
def test_generated_dag_files_refuse_ids_that_are_not_file_names(workspace, make_step, tmp_path, dag_id):
    from aml_airflow_provider.dagfile import write_dag_file

    spec = Pipeline(workspace, [make_step("s")]).spec
    with pytest.raises(ValueError, match="Invalid dag_id"):
        write_dag_file(tmp_path, dag_id, spec, title="t")
    assert not list(tmp_path.rglob("*.json"))
