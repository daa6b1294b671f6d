"""A corpus of malformed pipelines and submissions: each fails when it is built or submitted, with the
exact exception class and a message naming the offending object, and leaves nothing behind.

One table, one row per malformed input. A row is ``(build, error class, fragments)``: ``build(c)``
gets the :class:`Corpus` helpers and must raise exactly ``error class`` (not a subclass, not a
superclass), whose message contains every fragment (the step, port, parameter, datastore, compute
or path at fault). After every row, no DAG document was written and no DAG run was started.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.core.compute import AmlCompute, ComputeTarget
from aml_airflow_provider.data import DataPath, DataPathComputeBinding, DataReference
from aml_airflow_provider.exceptions import (
    ComputeTargetException,
    DataPathError,
    DatastoreNotFoundError,
    InvalidNameError,
    PipelineParameterError,
    PipelineValidationError,
    ScriptNotFoundError,
    StepDefinitionError,
    UserErrorException,
)
from aml_airflow_provider.pipeline.core import (
    Pipeline,
    PipelineData,
    PipelineEndpoint,
    PipelineParameter,
    PublishedPipeline,
    StepSequence,
)
from aml_airflow_provider.pipeline.steps import AdlaStep, DatabricksStep, PythonScriptStep


@dataclass
class Corpus:
    """What a row builds with: the session's embedded workspace, a source folder with ``step.py``,
    and a published pipeline (``count``: int, ``rate``: float, ``label``: str, ``input_path``: DataPath)
    behind the endpoint ``corpus-endpoint``."""

    ws: Any
    src: Path
    published: PublishedPipeline
    endpoint: PipelineEndpoint

    @property
    def store(self) -> Datastore:
        return Datastore(self.ws, "workspaceblobstore")

    def step(self, name: str, **kwargs: Any) -> PythonScriptStep:
        kwargs.setdefault("source_directory", self.src)
        return PythonScriptStep(kwargs.pop("script_name", "step.py"), name=name, **kwargs)

    def pipeline(self, *steps: Any, **kwargs: Any) -> Pipeline:
        return Pipeline(self.ws, list(steps), **kwargs)

    def typed(self) -> Pipeline:
        """A pipeline with a parameter of each type (the one published as ``published``)."""
        binding = (PipelineParameter("input_path", DataPath(self.store, "corpus/in")), DataPathComputeBinding())
        params = [PipelineParameter("count", 3), PipelineParameter("rate", 0.5), PipelineParameter("label", "x")]
        return self.pipeline(self.step("typed", inputs=[binding], arguments=[*params, binding]))

    def submit(self, **values: Any) -> None:
        Experiment(self.ws, "corpus_submissions").submit(self.typed(), pipeline_parameters=values)


def _two_writers(c: Corpus) -> None:
    shared = PipelineData("shared")
    c.step("first_writer", outputs=[shared])
    c.step("second_writer", outputs=[shared])


def _run_after_cycle(c: Corpus) -> None:
    first, second = c.step("first"), c.step("second")
    first.run_after(second)
    second.run_after(first)
    c.pipeline(first, second)


def _data_cycle(c: Corpus) -> None:
    x, y = PipelineData("x"), PipelineData("y")
    c.pipeline(c.step("step_a", inputs=[x], outputs=[y]), c.step("step_b", inputs=[y], outputs=[x]))


def _sequence_against_run_after(c: Corpus) -> None:
    early, late = c.step("early"), c.step("late")
    early.run_after(late)
    Pipeline(c.ws, StepSequence([early, late]))


def _three_step_cycle(c: Corpus) -> None:
    a_to_b, b_to_c = PipelineData("a_to_b"), PipelineData("b_to_c")
    a = c.step("ingest", outputs=[a_to_b])
    b = c.step("clean", inputs=[a_to_b], outputs=[b_to_c])
    last = c.step("report", inputs=[b_to_c])
    a.run_after(last)
    c.pipeline(a, b, last)


def _orphan_input(c: Corpus) -> None:
    c.pipeline(c.step("consumer", inputs=[PipelineData("orphan")]))


def _missing_producer_without_closure(c: Corpus) -> None:
    data = PipelineData("data")
    c.step("producer", outputs=[data])
    c.pipeline(c.step("consumer", inputs=[data]), resolve_closure=False)


def _script_missing_from_default_folder(c: Corpus) -> None:
    c.pipeline(PythonScriptStep("absent.py", name="train"), default_source_directory=c.src)


def _two_defaults(c: Corpus) -> None:
    c.pipeline(
        c.step("first", arguments=[PipelineParameter("epochs", 3)]),
        c.step("second", arguments=[PipelineParameter("epochs", 5)]),
    )


def _submit_published(c: Corpus, **values: Any) -> None:
    c.published.submit(c.ws, "corpus_published", pipeline_parameters=values)


def _submit_endpoint(c: Corpus, **values: Any) -> None:
    c.endpoint.submit("corpus_endpoint", pipeline_parameters=values)


Row = tuple[Callable[[Corpus], Any], type[Exception], tuple[str, ...]]

CORPUS: dict[str, Row] = {
    # -- names --------------------------------------------------------------------------------------
    "step name empty": (lambda c: c.step(""), InvalidNameError, ("step name", "''")),
    "step name with NUL byte": (lambda c: c.step("train\x00"), InvalidNameError, ("step name", r"'train\x00'")),
    "step name with right-to-left override": (
        lambda c: c.step("report\u202etxt.exe"),
        InvalidNameError,
        ("step name", r"'report\u202etxt.exe'", "control characters"),
    ),
    "step name of 256 characters": (lambda c: c.step("s" * 256), InvalidNameError, ("step name", "s" * 40, "255")),
    "port name with hyphen": (lambda c: PipelineData("my-data"), InvalidNameError, ("PipelineData name", "'my-data'")),
    "port name in Unicode": (lambda c: PipelineData("données"), InvalidNameError, ("PipelineData name", "'données'")),
    "output name with space": (
        lambda c: PipelineData("good", output_name="bad name"),
        InvalidNameError,
        ("output_name of PipelineData 'good'", "'bad name'"),
    ),
    "data reference name with space": (
        lambda c: DataReference(c.store, data_reference_name="raw data", path_on_datastore="raw"),
        InvalidNameError,
        ("data_reference_name", "'raw data'"),
    ),
    "input name with space": (
        lambda c: PipelineData("features").as_input("not ok"),
        InvalidNameError,
        ("input_name", "'not ok'"),
    ),
    "parameter name in Unicode": (
        lambda c: PipelineParameter("ünïcode", 1),
        InvalidNameError,
        ("pipeline parameter name", "'ünïcode'"),
    ),
    "parameter name with NUL byte": (
        lambda c: PipelineParameter("count\x00", 1),
        InvalidNameError,
        ("pipeline parameter name", r"'count\x00'"),
    ),
    "reserved parameter name": (
        lambda c: c.pipeline(c.step("tagger", arguments=[PipelineParameter("aml_tags", "x")])),
        PipelineValidationError,
        ("'aml_tags'", "'tagger'", "reserved"),
    ),
    "params key with hyphen": (
        lambda c: c.step("trainer", params={"learning-rate": 0.1}),
        InvalidNameError,
        ("'trainer'", "'learning-rate'"),
    ),
    "datastore name in Unicode": (
        lambda c: Datastore(c.ws, "dätä"),
        InvalidNameError,
        ("datastore name", "'dätä'"),
    ),
    "experiment name with space": (
        lambda c: Experiment(c.ws, "my experiment"),
        InvalidNameError,
        ("experiment name", "'my experiment'"),
    ),
    "compute name in Unicode": (
        lambda c: ComputeTarget.create(c.ws, "gpü-cluster", AmlCompute.provisioning_configuration(max_nodes=1)),
        ComputeTargetException,
        ("'gpü-cluster'",),
    ),
    "published pipeline name with NUL byte": (
        lambda c: c.typed().publish(name="nightly\x00"),
        InvalidNameError,
        ("Published pipeline name", r"'nightly\x00'"),
    ),
    "published pipeline version with newline": (
        lambda c: c.typed().publish(name="nightly", version="1\n2"),
        InvalidNameError,
        ("'nightly'", "version", r"'1\n2'"),
    ),
    "endpoint name with '..'": (
        lambda c: PipelineEndpoint.publish(c.ws, "../escape", c.published, "d"),
        InvalidNameError,
        ("pipeline endpoint name", "'../escape'"),
    ),
    # -- cycles -------------------------------------------------------------------------------------
    "run_after cycle": (_run_after_cycle, PipelineValidationError, ("Cycle detected", "'first'", "'second'")),
    "data cycle": (_data_cycle, PipelineValidationError, ("Cycle detected", "'step_a'", "'step_b'")),
    "StepSequence against run_after": (
        _sequence_against_run_after,
        PipelineValidationError,
        ("Cycle detected", "'early'", "'late'"),
    ),
    "three-step cycle through data and run_after": (
        _three_step_cycle,
        PipelineValidationError,
        ("Cycle detected", "'ingest'", "'clean'", "'report'"),
    ),
    "step runs after itself": (
        lambda c: (s := c.step("lonely")).run_after(s),
        UserErrorException,
        ("'lonely'", "itself"),
    ),
    # -- ports --------------------------------------------------------------------------------------
    "input no step produces": (_orphan_input, PipelineValidationError, ("'consumer'", "'orphan'", "no step produces")),
    "output claimed by two steps": (
        _two_writers,
        StepDefinitionError,
        ("'shared'", "'first_writer'", "'second_writer'"),
    ),
    "two inputs with one name": (
        lambda c: c.step(
            "reader",
            inputs=[
                DataReference(c.store, data_reference_name="data", path_on_datastore="one"),
                DataReference(c.store, data_reference_name="data", path_on_datastore="two"),
            ],
        ),
        InvalidNameError,
        ("'reader'", "'data'", "two inputs"),
    ),
    "two outputs with one name": (
        lambda c: c.step("writer", outputs=[PipelineData("out"), PipelineData("other", output_name="out")]),
        InvalidNameError,
        ("'writer'", "'out'"),
    ),
    "argument naming an unknown port": (
        lambda c: c.step("typo", arguments=["--in", "$AZUREML_DATAREFERENCE_ghost"]),
        StepDefinitionError,
        ("'typo'", "AZUREML_DATAREFERENCE_ghost"),
    ),
    "data in arguments but in no port list": (
        lambda c: c.step("confused", arguments=["--out", PipelineData("stray")]),
        StepDefinitionError,
        ("'confused'", "'stray'"),
    ),
    "data reference in arguments but not in inputs": (
        lambda c: c.step("reader", arguments=[DataReference(c.store, "raw_data", "raw")]),
        StepDefinitionError,
        ("'reader'", "raw_data"),
    ),
    "int parameter used as an input port": (
        lambda c: c.step("reader", inputs=[PipelineParameter("count", 3)]),
        StepDefinitionError,
        ("'count'", "DataPath"),
    ),
    "producer left out with resolve_closure=False": (
        _missing_producer_without_closure,
        PipelineValidationError,
        ("'producer'", "'consumer'", "resolve_closure"),
    ),
    # -- parameter types and values -----------------------------------------------------------------
    "list default": (lambda c: PipelineParameter("my_list", [1, 2]), PipelineParameterError, ("'my_list'", "list")),
    "None default": (lambda c: PipelineParameter("nothing", None), PipelineParameterError, ("'nothing'", "NoneType")),
    "NaN default": (lambda c: PipelineParameter("rate", float("nan")), PipelineParameterError, ("'rate'", "nan")),
    "infinite default": (lambda c: PipelineParameter("rate", float("inf")), PipelineParameterError, ("'rate'", "inf")),
    "integer default beyond 2**53": (
        lambda c: PipelineParameter("seed", 2**53),
        PipelineParameterError,
        ("'seed'", "9007199254740992"),
    ),
    "multi-line string default": (
        lambda c: PipelineParameter("notes", "one\ntwo"),
        PipelineParameterError,
        ("'notes'", "multi-line"),
    ),
    "string default of 32769 characters": (
        lambda c: PipelineParameter("blob", "b" * 32_769),
        PipelineParameterError,
        ("'blob'", "32769"),
    ),
    "one parameter, two defaults": (_two_defaults, PipelineValidationError, ("'epochs'", "3 and 5")),
    "int and bool defaults under one name": (
        lambda c: c.pipeline(
            c.step("first", arguments=[PipelineParameter("flag", 1)]),
            c.step("second", arguments=[PipelineParameter("flag", True)]),
        ),
        PipelineValidationError,
        ("'flag'",),
    ),
    "two parameters, one environment variable": (
        lambda c: c.pipeline(
            c.step("s", arguments=[PipelineParameter("learning.rate", 0.1), PipelineParameter("learning_rate", 1)])
        ),
        PipelineValidationError,
        ("'learning.rate'", "'learning_rate'", "AML_PARAMETER_learning_rate"),
    ),
    # -- paths with '..' ----------------------------------------------------------------------------
    "path_on_datastore leaving the datastore": (
        lambda c: DataReference(c.store, "raw", path_on_datastore="data/../../outside"),
        DataPathError,
        ("path_on_datastore", "'data/../../outside'", "'..'"),
    ),
    "DataPath leaving the datastore": (
        lambda c: DataPath(c.store, "../secrets"),
        DataPathError,
        ("path_on_datastore", "'../secrets'"),
    ),
    "child reference leaving the datastore": (
        lambda c: DataReference(c.store, "base", "data").path("../../etc"),
        DataPathError,
        ("'data/../../etc'", "'..'"),
    ),
    "script_name leaving source_directory": (
        lambda c: c.step("train", script_name="../escape.py"),
        StepDefinitionError,
        ("'train'", "'../escape.py'"),
    ),
    "path_on_compute leaving the working directory": (
        lambda c: DataReference(c.store, "raw", "data", mode="download", path_on_compute="../up"),
        DataPathError,
        ("path_on_compute of DataReference 'raw'", "'../up'"),
    ),
    "output_path_on_compute leaving the working directory": (
        lambda c: PipelineData("model", output_mode="upload", output_path_on_compute="out/../../model"),
        DataPathError,
        ("output_path_on_compute of PipelineData 'model'", "'out/../../model'"),
    ),
    "download path of an input leaving the working directory": (
        lambda c: PipelineData("features").as_download(path_on_compute="..\\features"),
        DataPathError,
        ("path_on_compute of input 'features'", r"'..\\features'"),
    ),
    # -- absolute paths -----------------------------------------------------------------------------
    "absolute script_name": (
        lambda c: c.step("train", script_name="/opt/train.py"),
        StepDefinitionError,
        ("'train'", "'/opt/train.py'"),
    ),
    "absolute path_on_compute": (
        lambda c: DataReference(c.store, "raw", "data").as_download(path_on_compute="/etc"),
        DataPathError,
        ("path_on_compute of DataReference 'raw'", "'/etc'"),
    ),
    "absolute output_path_on_compute": (
        lambda c: PipelineData("model", output_mode="upload", output_path_on_compute="/tmp/model"),
        DataPathError,
        ("output_path_on_compute of PipelineData 'model'", "'/tmp/model'"),
    ),
    "absolute path of a DataPath binding": (
        lambda c: DataPathComputeBinding(mode="download", path_on_compute="/mnt/data"),
        DataPathError,
        ("path_on_compute of DataPathComputeBinding", "'/mnt/data'"),
    ),
    "Windows path on a datastore": (
        lambda c: DataPath(c.store, "C:\\data"),
        DataPathError,
        ("path_on_datastore", r"'C:\\data'"),
    ),
    # -- NUL bytes ----------------------------------------------------------------------------------
    "NUL byte in path_on_datastore": (
        lambda c: DataReference(c.store, "raw", "data/\x00evil"),
        DataPathError,
        ("path_on_datastore", r"'data/\x00evil'", "NUL"),
    ),
    "NUL byte in script_name": (
        lambda c: c.step("train", script_name="train\x00.py"),
        StepDefinitionError,
        ("'train'", r"'train\x00.py'"),
    ),
    "NUL byte in source_directory": (
        lambda c: c.step("train", source_directory=f"{c.src}\x00"),
        StepDefinitionError,
        ("'train'", "source_directory", "NUL"),
    ),
    "NUL byte in an argument": (
        lambda c: c.step("train", arguments=["--mode", "fast\x00"]),
        StepDefinitionError,
        ("'train'", r"'fast\x00'", "NUL"),
    ),
    "NUL byte in a params value": (
        lambda c: c.step("train", params={"mode": "fast\x00"}),
        StepDefinitionError,
        ("'train'", "params['mode']", "NUL"),
    ),
    "NUL byte in a parameter default": (
        lambda c: PipelineParameter("text", "a\x00b"),
        PipelineParameterError,
        ("'text'", "NUL"),
    ),
    "NUL byte in the pipeline description": (
        lambda c: c.pipeline(c.step("s"), description="nightly\x00"),
        UserErrorException,
        ("description", r"'nightly\x00'", "NUL"),
    ),
    # -- huge values --------------------------------------------------------------------------------
    "path_on_datastore of 1025 characters": (
        lambda c: DataPath(c.store, "p" * 1025),
        DataPathError,
        ("path_on_datastore", "p" * 40, "1024"),
    ),
    "path_on_compute of 1025 characters": (
        lambda c: DataPathComputeBinding(mode="download", path_on_compute="q" * 1025),
        DataPathError,
        ("path_on_compute of DataPathComputeBinding", "q" * 40, "1024"),
    ),
    # -- unknown datastores and computes ------------------------------------------------------------
    "unknown datastore": (
        lambda c: Datastore(c.ws, "nope"),
        DatastoreNotFoundError,
        ("'nope'", "workspaceblobstore"),
    ),
    "unknown default datastore of a pipeline": (
        lambda c: c.pipeline(c.step("s"), default_datastore_name="nope"),
        DatastoreNotFoundError,
        ("'nope'",),
    ),
    "unknown compute target of a step": (
        lambda c: c.pipeline(c.step("train", compute_target="gpu-cluster")),
        PipelineValidationError,
        ("'train'", "'gpu-cluster'", "not found"),
    ),
    "unknown compute target looked up": (
        lambda c: ComputeTarget(c.ws, "nope"),
        ComputeTargetException,
        ("'nope'", "not found"),
    ),
    # -- missing scripts ----------------------------------------------------------------------------
    "missing script": (
        lambda c: c.step("train", script_name="tain.py"),
        ScriptNotFoundError,
        ("[train]", "tain.py"),
    ),
    "missing source directory": (
        lambda c: c.step("train", source_directory=c.src / "nowhere"),
        ScriptNotFoundError,
        ("[train]", "nowhere", "not a folder"),
    ),
    "missing script in the default source directory": (
        _script_missing_from_default_folder,
        PipelineValidationError,
        ("[train]", "absent.py"),
    ),
    "missing U-SQL script": (
        lambda c: AdlaStep("absent.usql", name="aggregate", source_directory=c.src, compute_target="adla1"),
        ScriptNotFoundError,
        ("[aggregate]", "absent.usql"),
    ),
    "missing Databricks script": (
        lambda c: DatabricksStep(
            "spark",
            python_script_name="absent.py",
            source_directory=c.src,
            existing_cluster_id="cluster-1",
            compute_target="dbx1",
        ),
        ScriptNotFoundError,
        ("[spark]", "absent.py", "python_script_name"),
    ),
    # -- submissions --------------------------------------------------------------------------------
    "submit: unknown parameter": (
        lambda c: c.submit(epochs=3),
        PipelineParameterError,
        ("epochs", "does not exist"),
    ),
    "submit: text for an int": (lambda c: c.submit(count="3"), PipelineParameterError, ("'count'", "'3'", "int")),
    "submit: integer beyond 2**53": (
        lambda c: c.submit(count=10**20),
        PipelineParameterError,
        ("'count'", "100000000000000000000"),
    ),
    "submit: NUL byte in a string": (lambda c: c.submit(label="a\x00b"), PipelineParameterError, ("'label'", "NUL")),
    "submit: DataPath on an unknown datastore": (
        lambda c: c.submit(input_path={"DataStoreName": "nope", "RelativePath": "x"}),
        PipelineParameterError,
        ("'input_path'", "'nope'"),
    ),
    "submit: DataPath on a datastore name that breaks the rule": (
        lambda c: c.submit(input_path={"DataStoreName": "no-such store", "RelativePath": "x"}),
        PipelineParameterError,
        ("'input_path'", "'no-such store'"),
    ),
    "submit: NUL byte in a run tag": (
        lambda c: Experiment(c.ws, "corpus_submissions").submit(c.typed(), tags={"team": "a\x00"}),
        UserErrorException,
        ("'team'", "NUL"),
    ),
    "published submit: unknown parameter": (
        lambda c: _submit_published(c, counts=1),
        PipelineParameterError,
        ("counts", "does not exist"),
    ),
    "published submit: bool for a float": (
        lambda c: _submit_published(c, rate=True),
        PipelineParameterError,
        ("'rate'", "True"),
    ),
    "published submit: string of 32769 characters": (
        lambda c: _submit_published(c, label="l" * 32_769),
        PipelineParameterError,
        ("'label'", "32769"),
    ),
    "published submit: experiment name with NUL byte": (
        lambda c: c.published.submit(c.ws, "exp\x00"),
        InvalidNameError,
        ("experiment name", r"'exp\x00'"),
    ),
    "endpoint submit: infinite float": (
        lambda c: _submit_endpoint(c, rate=float("inf")),
        PipelineParameterError,
        ("'rate'", "inf"),
    ),
    "endpoint submit: DataPath leaving the datastore": (
        lambda c: _submit_endpoint(c, input_path="azureml://datastores/workspaceblobstore/paths/../secrets"),
        PipelineParameterError,
        ("'input_path'", "'..'"),
    ),
    "endpoint submit: NUL byte in a string": (
        lambda c: _submit_endpoint(c, label="\x00"),
        PipelineParameterError,
        ("'label'", "NUL"),
    ),
}


@pytest.fixture(scope="module")
def corpus(workspace, tmp_path_factory) -> Corpus:
    src = tmp_path_factory.mktemp("corpus-src")
    (src / "step.py").write_text("print('step')\n")
    placeholder = Corpus(workspace, src, None, None)  # type: ignore[arg-type]
    published = placeholder.typed().publish(name="Corpus target")
    endpoint = PipelineEndpoint.publish(workspace, "corpus-endpoint", published, "bad submissions go here")
    return Corpus(workspace, src, published, endpoint)


def _dag_runs() -> int:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        return session.query(DagRun).count()


def _documents(ws) -> list[str]:
    return sorted(d.dag_id for d in ws._deployment.list_dags()) + sorted(
        e["name"] for e in ws._deployment.list_endpoints()
    )


def test_the_corpus_covers_every_category():
    assert len(CORPUS) >= 40
    categories = {"name", "cycle", "port", "default", "'..'", "absolute", "NUL", "unknown", "missing", "submit"}
    covered = {c for c in categories if any(c in row_id for row_id in CORPUS)}
    assert covered == categories
    assert {cls for _, cls, _ in CORPUS.values()} >= {
        InvalidNameError,
        PipelineValidationError,
        StepDefinitionError,
        ScriptNotFoundError,
        DataPathError,
        DatastoreNotFoundError,
        PipelineParameterError,
        ComputeTargetException,
        UserErrorException,
    }


@pytest.mark.parametrize(("build", "error", "fragments"), CORPUS.values(), ids=CORPUS.keys())
def test_malformed_input_fails_at_once_naming_what_is_wrong(corpus, build, error, fragments):
    documents, runs = _documents(corpus.ws), _dag_runs()

    with pytest.raises(Exception) as raised:  # the exact class is checked below
        build(corpus)

    assert type(raised.value) is error, f"{type(raised.value).__name__}: {raised.value}"
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    # Rejected input leaves nothing behind: no DAG file or endpoint written, no run started.
    assert _documents(corpus.ws) == documents
    assert _dag_runs() == runs


def test_a_published_name_with_backslashes_still_makes_a_loadable_dag_file(corpus):
    """Not malformed, but once fatal: the name heads the DAG file's docstring, where ``\\N`` or ``\\x``
    were read as escape sequences and Python refused to load the file."""
    from aml_airflow_provider.dagfile import Catalog

    name = r"C:\New models\x86 \N{ok}"
    published = corpus.typed().publish(name=name)

    py_path = Catalog(corpus.ws._deployment.dags_folder).dag_file(published.dag_id)
    namespace: dict[str, Any] = {"__file__": str(py_path)}
    exec(compile(py_path.read_text(encoding="utf-8"), str(py_path), "exec"), namespace)
    assert name in namespace["__doc__"]
    assert namespace["dag"].dag_id == published.dag_id
