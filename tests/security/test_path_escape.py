"""Paths that come from users or from a datastore never leave the datastore root or the step's folder.

Every path a user gives (``path_on_datastore``, ``DataPath``, ``DataPathAssignments``, ``target_path``,
``prefix``, ``path_on_compute``, output and port names) is either refused when it is given, with the
exception class and a message naming the argument and the object, or confined (a leading ``/`` means
the datastore's root). Names read from a datastore (blob names are free text, and Azure Storage turns
``\\`` into ``/``) are checked before anything is written: a blob named ``data/../../x`` or a tampered
snapshot manifest cannot write outside the folder being filled. Both a local-folder datastore and a
blob datastore (Azurite) are used.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.data.datapath import DataPath, DataPathComputeBinding
from aml_airflow_provider.exceptions import (
    ActivityFailedException,
    DataPathError,
    DatastoreError,
    InvalidNameError,
    PipelineParameterError,
)
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import PythonScriptStep

ESCAPING = ["../../etc", "a/../../b", "a/..", "..", "./../x"]
BACKSLASHED = ["..\\..\\etc", "a\\b"]
OUTSIDE_COMPUTE = ["../x", "/etc", "a/../../b", "..\\x"]


@pytest.fixture(params=["local", "blob"])
def datastore(request, workspace):
    """The workspace's local-folder default datastore, or the blob datastore on Azurite."""
    if request.param == "local":
        return Datastore(workspace, "workspaceblobstore")
    return request.getfixturevalue("blob_datastore")


def hostile_blob_name(prefix: str, landing: Path, file: str) -> str:
    """A blob name under ``prefix`` whose ``..`` segments lead from any folder to ``landing/file``.

    Backslashes, because an HTTP client would resolve ``/../`` itself; Azure Storage (and Azurite) store
    each ``\\`` as ``/``."""
    return prefix + "\\" + "..\\" * 16 + f"{landing}/{file}".strip("/").replace("/", "\\")


def put_blob(datastore, name: str, data: bytes = b"hostile") -> str:
    """Write a blob straight into the container; return the name the service stored."""
    client = datastore._backend.container_client
    client.upload_blob(name, data, overwrite=True)
    stored = name.replace("\\", "/")
    assert stored in [b.name for b in client.list_blobs(name_starts_with=stored.split("/")[0])]
    return stored


# -- refused when given ----------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ESCAPING + BACKSLASHED)
def test_a_datastore_path_that_escapes_is_refused_where_it_is_given(datastore, path):
    with pytest.raises(DataPathError, match=r"Invalid path_on_datastore") as refused:
        DataReference(datastore, "ref", path_on_datastore=path)
    assert repr(path) in str(refused.value)
    with pytest.raises(DataPathError, match=r"Invalid path_on_datastore"):
        DataPath(datastore, path)
    with pytest.raises(DataPathError, match=r"Invalid path_on_datastore"):
        DataReference(datastore, "ref", path_on_datastore="ok").path(path)
    with pytest.raises(DataPathError, match=r"Invalid target_path"):
        datastore.upload_files([__file__], target_path=path, show_progress=False)
    with pytest.raises(DataPathError, match=r"Invalid prefix"):
        datastore.download("/tmp/never-written", prefix=path, show_progress=False)


def test_leading_slash_and_dot_segments_stay_inside_the_datastore(datastore):
    assert DataReference(datastore, "ref", path_on_datastore="/etc/passwd").path_on_datastore == "etc/passwd"
    assert DataPath(datastore, "//a/./b/").path_on_datastore == "a/b"
    assert DataReference(datastore, "ref").path("/x").path_on_datastore == "x"


@pytest.mark.parametrize("path", OUTSIDE_COMPUTE)
def test_a_path_on_compute_outside_the_working_directory_is_refused_where_it_is_given(datastore, path):
    ref = DataReference(datastore, "raw", path_on_datastore="in")
    cases = [
        (lambda: DataReference(datastore, "raw", "in", mode="download", path_on_compute=path), "DataReference 'raw'"),
        (lambda: ref.as_download(path_on_compute=path), "DataReference 'raw'"),
        (lambda: ref.as_upload(path_on_compute=path), "DataReference 'raw'"),
        (lambda: DataPathComputeBinding(mode="download", path_on_compute=path), "DataPathComputeBinding"),
        (lambda: PipelineData("model").as_download(path_on_compute=path), "input 'model'"),
        (
            lambda: PipelineData("model", output_mode="upload", output_path_on_compute=path),
            "PipelineData 'model'",
        ),
    ]
    for make, named in cases:
        with pytest.raises(DataPathError) as refused:
            make()
        message = str(refused.value)
        assert named in message and repr(path) in message and "path_on_compute" in message, message


@pytest.mark.parametrize("name", ["../x", "a/b", "..", "a\\b", "."])
def test_port_and_output_names_with_path_characters_are_refused(datastore, name):
    with pytest.raises(InvalidNameError, match="PipelineData name"):
        PipelineData(name)
    with pytest.raises(InvalidNameError, match="output_name of PipelineData 'model'"):
        PipelineData("model", output_name=name)
    with pytest.raises(InvalidNameError, match="data_reference_name"):
        DataReference(datastore, name, "in")
    with pytest.raises(InvalidNameError, match="input_name"):
        PipelineData("model").as_input(input_name=name)


def test_upload_to_a_leading_slash_target_lands_inside_the_root(workspace, tmp_path):
    store = Datastore(workspace, "workspaceblobstore")
    (tmp_path / "f.txt").write_text("data")
    ref = store.upload_files(
        [str(tmp_path / "f.txt")], target_path="/escape-test/abs", overwrite=True, show_progress=False
    )
    assert ref.path_on_datastore == "escape-test/abs"
    assert (Path(store.root) / "escape-test" / "abs" / "f.txt").read_text() == "data"
    assert not Path("/escape-test").exists()


# -- names read from a blob datastore --------------------------------------------------------------------
def test_download_refuses_blob_names_that_would_leave_the_target_folder(blob_datastore, tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    name = put_blob(blob_datastore, hostile_blob_name("escape-dl", landing, "made/pwned.txt"))
    put_blob(blob_datastore, "escape-dl/ok.txt", b"fine")
    target = tmp_path / "target"
    with pytest.raises(DatastoreError) as refused:
        blob_datastore.download(str(target), prefix="escape-dl", show_progress=False)
    message = str(refused.value)
    assert "Refusing to copy" in message and repr(name) in message and "datastore 'blobstore'" in message
    # Checked before anything is written: no folder made outside, and not even the good file copied.
    assert not (landing / "made").exists()
    assert not target.exists() or not any(target.rglob("*.txt"))

    # A PipelineRun output is downloaded the same way (PortDataReference.download).
    from aml_airflow_provider.pipeline.core.graph import PortDataReference

    with pytest.raises(DatastoreError, match="Refusing to copy"):
        PortDataReference(blob_datastore, "escape-dl", "out").download(str(target), show_progress=False)
    assert not (landing / "made").exists()


def test_a_blob_name_with_a_leading_slash_is_never_written_at_that_absolute_path(
    workspace, azurite, blob_container, tmp_path
):
    store = Datastore.register_azure_blob_container(
        workspace, "escape_fresh", blob_container, connection_string=azurite.connection_string, overwrite=True
    )
    landing = tmp_path / "landing"
    name = put_blob(store, f"{landing}/abs.txt", b"abs")  # "/tmp/.../landing/abs.txt"
    assert name.startswith("/")
    # A datastore path has no leading '/': such a blob cannot be addressed, so it is not downloaded at all.
    try:
        with pytest.raises(DatastoreError, match="no such file"):
            store.download(str(tmp_path / "target"), show_progress=False)
    finally:
        store.unregister()
    assert not landing.exists()


@pytest.mark.e2e
def test_a_step_input_with_an_escaping_blob_name_fails_the_step_and_writes_nothing_outside(
    workspace, blob_datastore, script_dir, tmp_path, capfd
):
    landing = tmp_path / "landing"
    landing.mkdir()
    name = put_blob(blob_datastore, hostile_blob_name("escape-in", landing, "made/pwned.py"))
    put_blob(blob_datastore, "escape-in/rows.csv", b"a\n1\n")
    (script_dir / "read.py").write_text("import sys\nprint(open(sys.argv[1] + '/rows.csv').read())\n")
    data = DataReference(blob_datastore, "rows", "escape-in")
    step = PythonScriptStep(
        "read.py", name="read", arguments=[data], inputs=[data], source_directory=script_dir, allow_reuse=False
    )
    run = Experiment(workspace, "escape_input").submit(Pipeline(workspace, [step]))
    with pytest.raises(ActivityFailedException):
        run.wait_for_completion(show_output=False)
    assert run.find_step_run("read")[0].get_status() == "Failed"
    assert not (landing / "made").exists()
    out, err = capfd.readouterr()
    # The task log names the file (under the input's folder) and the datastore.
    assert "Refusing to copy" in out + err and repr(name.removeprefix("escape-in/")) in out + err
    assert "datastore 'blobstore'" in out + err


@pytest.mark.e2e
def test_loading_blob_files_into_a_sql_table_refuses_escaping_names(workspace, blob_datastore, tmp_path, capfd):
    import uuid

    from aml_airflow_provider.data.sql_data_reference import SqlDataReference
    from aml_airflow_provider.pipeline.steps import DataTransferStep

    landing = tmp_path / "landing"
    landing.mkdir()
    folder = f"escape-sql-{uuid.uuid4().hex[:6]}"
    put_blob(blob_datastore, f"{folder}/part-1.csv", b"name,qty\nbolt,3\n")
    name = put_blob(blob_datastore, hostile_blob_name(folder, landing, "made/pwned.csv"), b"name,qty\nnut,5\n")
    pg = Datastore.register_azure_postgre_sql(
        workspace, "escape_pg", "127.0.0.1", "test", "postgres", None, enforce_ssl=False, overwrite=True
    )
    table = f"escape_{uuid.uuid4().hex[:8]}"
    with pg._sql.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (name varchar(20), qty int)")
    try:
        step = DataTransferStep(
            "load",
            DataReference(blob_datastore, "parts", folder),
            SqlDataReference(pg, "stock", sql_table=table),
            source_reference_type="directory",
            allow_reuse=False,
        )
        run = Experiment(workspace, "escape_sql").submit(Pipeline(workspace, [step]))
        with pytest.raises(ActivityFailedException):
            run.wait_for_completion(show_output=False)
        with pg._sql.engine.connect() as conn:
            assert conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar() == 0
    finally:
        with pg._sql.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
        pg.unregister()
    assert not (landing / "made").exists()
    out, err = capfd.readouterr()
    assert "Refusing to copy" in out + err and repr(name) in out + err


@pytest.mark.e2e
def test_step_run_files_with_escaping_names_are_not_downloaded_outside(workspace, blob_datastore, script_dir, tmp_path):
    (script_dir / "keep.py").write_text(
        "import os\nos.makedirs('outputs', exist_ok=True)\nopen('outputs/m.txt','w').write('m')\n"
    )
    step = PythonScriptStep("keep.py", name="keep", source_directory=script_dir, allow_reuse=False)
    pipeline = Pipeline(workspace, [step], default_datastore=blob_datastore)
    run = Experiment(workspace, "escape_files").submit(pipeline)
    assert run.wait_for_completion(show_output=False) == "Finished"
    (step_run,) = run.find_step_run("keep")
    assert step_run.get_file_names() == ["azureml-logs/70_driver_log.txt", "outputs/m.txt"]
    files = [
        b.name for b in blob_datastore._backend.container_client.list_blobs(name_starts_with="azureml/escape_files/")
    ]
    (folder,) = {n.split("/files/")[0] for n in files if "/step-run/files/" in n}
    landing = tmp_path / "landing"
    landing.mkdir()
    put_blob(blob_datastore, hostile_blob_name(f"{folder}/files/outputs", landing, "made/pwned.txt"))
    with pytest.raises(DatastoreError, match="Refusing to copy"):
        step_run.download_files(output_directory=str(tmp_path / "files"))
    assert not (landing / "made").exists()


@pytest.mark.e2e
def test_a_snapshot_manifest_cannot_write_outside_the_restore_folder(workspace, script_dir, tmp_path):
    from aml_airflow_provider.runtime.snapshot import Snapshot

    (script_dir / "noop.py").write_text("print('ok')\n")
    step = PythonScriptStep("noop.py", name="noop", source_directory=script_dir, allow_reuse=False)
    run = Experiment(workspace, "escape_snapshot").submit(Pipeline(workspace, [step]))
    assert run.wait_for_completion(show_output=False) == "Finished"
    (step_run,) = run.find_step_run("noop")
    snapshots = Path(Datastore(workspace, "workspaceblobstore").root) / "azureml" / "snapshots"
    original = snapshots / f"{step_run.snapshot_id}.json"
    manifest = json.loads(original.read_text())
    landing = tmp_path / "landing"
    landing.mkdir()
    climbing = {**manifest, "../" * 16 + str(landing).strip("/") + "/pwned.py": manifest["noop.py"]}

    # Someone with write access to the datastore edits the manifest: its id no longer matches.
    original.write_text(json.dumps(climbing))
    with pytest.raises(DatastoreError, match="does not match its id") as refused:
        step_run.restore_snapshot(str(tmp_path / "restored"))
    assert step_run.snapshot_id in str(refused.value)
    assert not (landing / "pwned.py").exists()

    # ... or stores it under its own id and points the step run's record at it.
    forged_id = Snapshot.from_manifest(climbing).id
    (snapshots / f"{forged_id}.json").write_text(json.dumps(climbing))
    (details,) = Path(Datastore(workspace, "workspaceblobstore").root).glob(
        "azureml/escape_snapshot/*/noop/step-run/details.json"
    )
    details.write_text(json.dumps({**json.loads(details.read_text()), "snapshot": forged_id}))
    with pytest.raises(DatastoreError, match="Refusing to copy") as refused:
        step_run.restore_snapshot(str(tmp_path / "restored"))
    assert "pwned.py" in str(refused.value) and f"snapshot {forged_id}" in str(refused.value)
    assert not (landing / "pwned.py").exists()


# -- DataPath parameters: submitted values and DataPathAssignments ---------------------------------------
LIST_INPUT = """
import json, os, sys
out = sys.argv[sys.argv.index("--out") + 1]
data = sys.argv[sys.argv.index("--data") + 1]
os.makedirs(out, exist_ok=True)
json.dump({"path": os.path.realpath(data), "content": open(data).read()}, open(os.path.join(out, "seen.json"), "w"))
"""


def datapath_pipeline(workspace, datastore, script_dir):
    (script_dir / "use.py").write_text(LIST_INPUT)
    param = PipelineParameter("data", default_value=DataPath(datastore, "escape-dp/data.txt"))
    out = PipelineData("seen", datastore=Datastore(workspace, "workspaceblobstore"))
    step = PythonScriptStep(
        "use.py",
        name="../../use",  # a display name: it does not become a path
        arguments=["--data", (param, DataPathComputeBinding(mode="mount")), "--out", out],
        inputs=[(param, DataPathComputeBinding(mode="mount"))],
        outputs=[out],
        source_directory=script_dir,
        allow_reuse=False,
    )
    return Pipeline(workspace, [step])


@pytest.mark.parametrize(
    "value",
    [
        {"DataStoreName": "workspaceblobstore", "RelativePath": "../../etc"},
        {"DataStoreName": "workspaceblobstore", "RelativePath": "escape-dp/../../.."},
        {"DataStoreName": "workspaceblobstore", "RelativePath": "..\\..\\etc"},
        "azureml://datastores/workspaceblobstore/paths/%2e%2e/%2E%2E/etc",
        "azureml://datastores/workspaceblobstore/paths/escape-dp/../../etc",
    ],
)
def test_a_submitted_datapath_that_escapes_is_refused_naming_the_parameter(workspace, script_dir, value):
    pipeline = datapath_pipeline(workspace, Datastore(workspace, "workspaceblobstore"), script_dir)
    with pytest.raises(PipelineParameterError, match=r"Pipeline parameter 'data'") as refused:
        Experiment(workspace, "escape_datapath").submit(pipeline, pipeline_parameters={"data": value})
    assert "'..'" in str(refused.value) or "'/'" in str(refused.value)


@pytest.mark.e2e
@pytest.mark.parametrize("kind", ["local", "blob"])
def test_a_leading_slash_datapath_reads_inside_the_datastore(workspace, blob_datastore, script_dir, tmp_path, kind):
    datastore = Datastore(workspace, "workspaceblobstore") if kind == "local" else blob_datastore
    (tmp_path / "data.txt").write_text(f"inside {kind}")
    datastore.upload_files([str(tmp_path / "data.txt")], target_path="etc", overwrite=True, show_progress=False)
    pipeline = datapath_pipeline(workspace, datastore, script_dir)
    value = {"DataStoreName": datastore.name, "RelativePath": "/etc/data.txt"}
    run = Experiment(workspace, "escape_datapath_ok").submit(pipeline, pipeline_parameters={"data": value})
    assert run.wait_for_completion(show_output=False) == "Finished"
    (step_run,) = run.get_steps()
    uri = step_run._xcoms()["seen"]
    assert "/paths/azureml/escape_datapath_ok/" in uri and "/use/seen" in uri  # the step name made path-safe
    ref = step_run.get_output_data("seen")
    ref.download(str(tmp_path / "out"), show_progress=False)
    seen = json.loads((tmp_path / "out" / ref.path_on_datastore / "seen.json").read_text())
    assert seen["content"] == f"inside {kind}"
    if kind == "local":
        assert seen["path"] == str(Path(datastore.root).resolve() / "etc" / "data.txt")


@pytest.mark.e2e
def test_an_escaping_datapath_given_straight_to_airflow_fails_the_step_naming_it(workspace, script_dir, capfd):
    # Airflow's trigger form and REST API take any string matching the param's pattern: the task refuses it.
    pipeline = datapath_pipeline(workspace, Datastore(workspace, "workspaceblobstore"), script_dir)
    run = Experiment(workspace, "escape_datapath_conf").submit(pipeline)
    run.wait_for_completion(show_output=False, raise_on_error=False)
    dag_id = run.dag_id
    hostile = "azureml://datastores/workspaceblobstore/paths/escape-dp/../../../etc/passwd"
    run_id = workspace._deployment.trigger(dag_id, {"data": hostile})
    from aml_airflow_provider.pipeline.core.run import PipelineRun

    again = PipelineRun.get(workspace, run_id)
    assert again.get_status() == "Failed"
    out, err = capfd.readouterr()
    assert "DataPathError: Task 'use': DAG param 'data' (input 'data'): Invalid path_on_datastore" in out + err
    assert "'..' would leave the datastore root" in out + err


@pytest.mark.server
def test_the_rest_endpoint_refuses_escaping_datapath_assignments(airflow_server, azurite, tmp_path):
    from tests.server.conftest import workspace_on

    with workspace_on(airflow_server, azurite, "escape-srv") as (ws, auth):
        src = tmp_path / "src"
        src.mkdir()
        published = datapath_pipeline(ws, Datastore(ws, "workspaceblobstore"), src).publish(name="Escape check")
        headers = auth.get_authentication_header()
        for relative in ("../../etc", "a/../..", "..\\..\\x"):
            body = {
                "ExperimentName": "escape_rest",
                "DataPathAssignments": {"data": {"DataStoreName": "workspaceblobstore", "RelativePath": relative}},
            }
            answer = requests.post(published.endpoint, headers=headers, json=body, timeout=60)
            assert answer.status_code == 400, (relative, answer.text)
            assert "data" in answer.text and repr(relative).strip("'") in answer.text.replace("\\\\", "\\")
        assert ws._deployment.list_dag_runs(published.dag_id) == []
