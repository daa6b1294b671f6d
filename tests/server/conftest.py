"""Shared by the server tests: a workspace in the session's Airflow server, with its data on Azurite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from aml_airflow_provider.core import Datastore, Workspace
from aml_airflow_provider.core.authentication import AirflowAuthentication
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, PipelineRun
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from tests.support.airflow_server import PASSWORDS

SCRIPT = """
import json, os, sys
from aml_airflow_provider.core import Run
arg, out = int(sys.argv[sys.argv.index("--param1") + 1]), sys.argv[sys.argv.index("--output") + 1]
os.makedirs(out, exist_ok=True)
json.dump({"pipeline_arg": arg}, open(os.path.join(out, "result.json"), "w"))
Run.get_context().log("doubled", arg * 2)
print("compared with", arg)
"""


@contextmanager
def workspace_on(server, azurite, name: str) -> Iterator[tuple[Workspace, AirflowAuthentication]]:
    """A workspace created in ``server``, its data on Azurite; the client reads the datastore's
    credential from its own AIRFLOW_CONN_* variable, as Airflow's API never returns it."""
    from airflow.sdk import Connection

    auth = AirflowAuthentication("admin", PASSWORDS["admin"])
    ws = Workspace.create(
        name,
        storage_account=azurite.connection_string,
        airflow_url=server.url,
        auth=auth,
        exist_ok=True,
        show_output=False,
    )
    conn_id = f"aml_datastore.{ws.name}.workspaceblobstore"
    mp = pytest.MonkeyPatch()
    mp.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        Connection(conn_id=conn_id, conn_type="aml_blob_datastore", password=azurite.connection_string).as_json(),
    )
    try:
        yield ws, auth
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def remote(airflow_server, azurite, tmp_path_factory):
    """A workspace in the session's Airflow server (see :func:`workspace_on`), and a source folder."""
    with workspace_on(airflow_server, azurite, "remote-ws") as (ws, auth):
        src = tmp_path_factory.mktemp("remote-src")
        (src / "compare.py").write_text(SCRIPT)
        yield ws, auth, src


def build(ws: Workspace, src: Path) -> Pipeline:
    out = PipelineData("out_data3", datastore=Datastore(ws, "workspaceblobstore"))
    pipeline_param = PipelineParameter(name="pipeline_arg", default_value=10, description="how far to compare")
    compare = PythonScriptStep(
        script_name="compare.py",
        arguments=["--param1", pipeline_param, "--output", out],
        outputs=[out],
        source_directory=src,
    )
    return Pipeline(workspace=ws, steps=[compare])


def output_of(ws: Workspace, run: PipelineRun, tmp_path: Path) -> dict:
    ref = run.find_step_run("compare.py")[0].get_output_data("out_data3")
    target = tmp_path / "download"
    ref.download(str(target), overwrite=True, show_progress=False)
    return json.loads((target / ref.path_on_datastore / "result.json").read_text())


def all_runs(server) -> set[tuple[str, str]]:
    """Every DAG run on ``server``, as (dag_id, run_id), read with admin's token through Airflow's API."""
    body = requests.get(
        f"{server.url}/api/v2/dags/~/dagRuns", headers=server.headers(), params={"limit": 1000}, timeout=30
    ).json()
    assert body["total_entries"] == len(body["dag_runs"])  # all of them fit in one page
    return {(r["dag_id"], r["dag_run_id"]) for r in body["dag_runs"]}


def wait_run(ws: Workspace, run_id: str, timeout: float = 180) -> PipelineRun:
    run = PipelineRun.get(ws, run_id)
    assert run.wait_for_completion(show_output=False, timeout_seconds=timeout) == "Finished"
    return run
