"""AdlaStepOperator and AdlaHook against a loopback Data Lake Analytics job service.

The service stand-in is written from the public job API reference (api-version 2016-11-01); tokens
come from the real ``azure-identity`` ``ClientSecretCredential`` talking to a stand-in Entra ID token
endpoint over HTTPS. Data lives on Azurite.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.core.compute import ComputeTarget
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.exceptions import DatastoreError, RemoteServiceError, StepRunError
from aml_airflow_provider.hooks.adla import AdlaHook
from aml_airflow_provider.operators.adla_step import job_id_for
from aml_airflow_provider.operators.registry import operator_for
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import AdlaStep
from aml_airflow_provider.triggers.adla import AdlaJobTrigger
from aml_airflow_provider.uris import DatastoreUri
from tests.support.adla_server import AdlaServer
from tests.support.task_instance import Background, FakeTI

CONN = "aml_compute.test-ws.adla"
SCRIPT = """@rows = EXTRACT id int, v int FROM "@@raw@@" USING Extractors.Csv(skipFirstNRows: 1);
@big = SELECT * FROM @rows WHERE v > @@threshold@@;
OUTPUT @big TO "@@filtered@@/out.csv" USING Outputters.Csv();
"""


@pytest.fixture
def adla(workspace, connections, monkeypatch):
    with AdlaServer() as server:
        for name, value in server.ca_env().items():
            monkeypatch.setenv(name, value)
        ComputeTarget.attach(workspace, "adla", server.attach_configuration())
        connections()
        yield server
    ComputeTarget(workspace, "adla").detach()


@pytest.fixture
def usql(script_dir):
    (script_dir / "filter.usql").write_text(SCRIPT)
    return script_dir


@pytest.fixture
def raw(blob_datastore, tmp_path):
    (tmp_path / "rows.csv").write_text("id,v\n1,5\n2,50\n")
    blob_datastore.upload_files(
        [str(tmp_path / "rows.csv")], target_path="adla-in", overwrite=True, show_progress=False
    )
    return DataReference(blob_datastore, path_on_datastore="adla-in/rows.csv", data_reference_name="raw")


def make_step(usql, raw, blob_datastore, **kwargs):
    args = dict(
        name="filter",
        inputs=[raw],
        outputs=[PipelineData("filtered", datastore=blob_datastore)],
        params={"threshold": PipelineParameter("threshold", default_value=10)},
        degree_of_parallelism=4,
        priority=50,
        runtime_version="release_20240101",
        compute_target="adla",
        source_directory=usql,
        allow_reuse=False,
    )
    return AdlaStep("filter.usql", **{**args, **kwargs})


def build(workspace, step, **kwargs):
    spec = Pipeline(workspace, [step]).spec
    (s,) = spec.steps
    kwargs.setdefault("polling_period_seconds", 0.01)
    return operator_for(s.kind).from_step_spec(s, spec, **kwargs)


def context(ti, **params):
    return {"ti": ti, "params": {"threshold": 10, **params}}


def record_of(workspace, ti) -> tuple[str, dict]:
    record = DatastoreUri.parse(ti.pushed["aml.step_run"]["record"])
    root = Path(Datastore(workspace, record.datastore).root) / record.path
    return (root / "files/azureml-logs/70_driver_log.txt").read_text(), json.loads((root / "details.json").read_text())


def test_submission_payload_substitution_and_success(workspace, adla, usql, raw, blob_datastore):
    adla.script_next_job(["Accepted", "Compiling", "Queued", "Scheduling", "Starting", "Running", "Ended"])
    ti = FakeTI()
    build(workspace, make_step(usql, raw, blob_datastore)).execute(context(ti, threshold=25))

    (body,) = adla.submitted()
    out = "azureml/dag1/manual__2026-01-01T00_00_00_00_00/filter/filtered"
    assert body["type"] == "USql" and body["name"].startswith("filter (dag1 ")
    assert (body["degreeOfParallelism"], body["priority"]) == (4, 50)
    assert body["properties"] == {
        "type": "USql",
        "runtimeVersion": "release_20240101",
        "script": SCRIPT.replace("@@raw@@", "wasb://test-blobstore@devstoreaccount1/adla-in/rows.csv")
        .replace("@@threshold@@", "25")
        .replace("@@filtered@@", f"wasb://test-blobstore@devstoreaccount1/{out}"),
    }
    job_id = job_id_for("dag1", ti.run_id, "t1", -1, 1)
    assert adla.jobs_requests("PUT")[0].path.lower().endswith(f"/jobs/{job_id}")
    assert all(r.query.get("api-version") == "2016-11-01" for r in adla.requests)
    assert (ti.pushed["adla_job_id"], ti.pushed["adla_job_url"]) == (job_id, f"{adla.url}/jobs/{job_id}")
    assert ti.pushed["filtered"] == f"azureml://datastores/blobstore/paths/{out}"
    log, details = record_of(workspace, ti)
    assert details["status"] == "Finished" and details["adla_result"] == "Succeeded"
    # Tokens came from the credential, went in the Authorization header, and nowhere else.
    assert {r.header("Authorization") for r in adla.requests} == {f"Bearer {adla.issued_tokens[0]}"}
    leaked = json.dumps(ti.pushed) + log
    assert adla.issued_tokens[0] not in leaked and adla.client_secret not in leaked


def test_failed_job_reports_its_errors(workspace, adla, usql, raw, blob_datastore):
    error = {
        "errorId": "E_CSC_USER_SYNTAXERROR",
        "severity": "Error",
        "source": "USER",
        "message": "syntax error. Expected one of: FROM",
        "lineNumber": 2,
        "startOffset": 40,
        "endOffset": 45,
    }
    adla.script_next_job(["Accepted", "Compiling", "Ended"], result="Failed", errors=[error])
    ti = FakeTI()
    with pytest.raises(StepRunError, match=r"ended Failed: Error E_CSC_USER_SYNTAXERROR at line 2: syntax error"):
        build(workspace, make_step(usql, raw, blob_datastore)).execute(context(ti))
    assert "filtered" not in ti.pushed
    log, details = record_of(workspace, ti)
    assert details["status"] == "Failed" and "E_CSC_USER_SYNTAXERROR" in log


def test_on_kill_cancels_the_job(workspace, adla, usql, raw, blob_datastore):
    adla.script_next_job(["Accepted", "Running"])  # runs until cancelled
    op = build(workspace, make_step(usql, raw, blob_datastore))
    running = Background(op, context(FakeTI()), lambda: op.job_id is not None)
    op.on_kill()
    error = running.result()
    assert adla.cancelled == [op.job_id]
    assert isinstance(error, StepRunError) and "ended Cancelled" in str(error)


def test_a_retry_reattaches_to_the_running_job_of_an_earlier_try(workspace, adla, usql, raw, blob_datastore):
    # Try 1 submitted its job and its worker died.
    adla.script_next_job(["Accepted", "Running", "Running", "Ended"])
    first = job_id_for("dag1", FakeTI().run_id, "t1", -1, 1)
    AdlaHook(CONN).submit_job(first, {"type": "USql", "name": "x", "properties": {"type": "USql", "script": "x"}})
    ti = FakeTI(try_number=2)
    build(workspace, make_step(usql, raw, blob_datastore)).execute(context(ti))
    assert len(adla.submitted()) == 1, "no second job"
    assert ti.pushed["adla_job_id"] == first and "filtered" in ti.pushed

    # A retry after the earlier job *failed* submits a job of its own.
    adla.script_next_job(["Ended"], result="Failed")
    ti3 = FakeTI(try_number=3)
    ti3.run_id = "manual__2026-01-03T00:00:00+00:00"
    failed = job_id_for("dag1", ti3.run_id, "t1", -1, 2)
    AdlaHook(CONN).submit_job(failed, {"type": "USql", "name": "x", "properties": {"type": "USql", "script": "x"}})
    build(workspace, make_step(usql, raw, blob_datastore)).execute(context(ti3))
    assert ti3.pushed["adla_job_id"] == job_id_for("dag1", ti3.run_id, "t1", -1, 3)
    assert len(adla.submitted()) == 3


def test_token_refresh_after_the_service_rejects_it(adla, connections):
    hook = AdlaHook(CONN)
    adla.script_next_job(["Running"])
    job_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    hook.submit_job(job_id, {"type": "USql", "name": "x", "properties": {"type": "USql", "script": "x"}})
    assert len(adla.issued_tokens) == 1
    hook.get_job(job_id)
    assert len(adla.issued_tokens) == 1, "a valid token is reused"
    adla.expire_tokens()
    assert hook.get_job(job_id)["state"] == "Running"
    assert len(adla.issued_tokens) == 2
    assert adla.requests[-1].header("Authorization") == f"Bearer {adla.issued_tokens[1]}"


def test_429_and_5xx_are_retried_with_backoff_then_reported(adla, connections):
    hook = AdlaHook(CONN, retry_limit=3, retry_delay=0.01)
    adla.script_next_job(["Running"])
    job_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    hook.submit_job(job_id, {"type": "USql", "name": "x", "properties": {"type": "USql", "script": "x"}})
    adla.fail_next(429, times=2, method="GET", retry_after=0.05)
    before = len(adla.jobs_requests("GET"))
    assert hook.get_job(job_id)["state"] == "Running"
    assert len(adla.jobs_requests("GET")) - before == 3
    adla.fail_next(503, times=5, method="GET")
    with pytest.raises(RemoteServiceError, match="answered 503 to GET") as info:
        hook.get_job(job_id)
    assert info.value.status_code == 503
    assert adla.client_secret not in str(info.value)


def test_deferrable_wait_and_cancel_through_the_trigger(workspace, adla, usql, raw, blob_datastore):
    adla.script_next_job(["Accepted", "Queued", "Running", "Ended"])
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        build(workspace, make_step(usql, raw, blob_datastore), deferrable=True).execute(context(ti))
    trigger = deferred.value.trigger
    classpath, kwargs = trigger.serialize()
    assert classpath == "aml_airflow_provider.triggers.adla.AdlaJobTrigger"
    assert kwargs == {"adla_conn_id": CONN, "job_id": ti.pushed["adla_job_id"], "poll_interval": 0.01}
    json.dumps(deferred.value.kwargs)
    assert adla.client_secret not in json.dumps(deferred.value.kwargs)

    async def first_event():
        async for event in AdlaJobTrigger(**kwargs).run():
            return event

    event = asyncio.run(first_event())
    assert event.payload["status"] == "ended" and event.payload["job"]["result"] == "Succeeded"
    resumed = build(workspace, make_step(usql, raw, blob_datastore), deferrable=True)
    resumed.execute_complete(context(ti), event=event.payload, **deferred.value.kwargs)
    assert ti.pushed["filtered"].startswith("azureml://datastores/blobstore/paths/")
    asyncio.run(AdlaJobTrigger(**kwargs).on_kill())
    assert adla.cancelled == [ti.pushed["adla_job_id"]]


def test_local_datastore_cannot_reach_data_lake_analytics(workspace, adla, usql, raw):
    step = make_step(usql, raw, None, outputs=[PipelineData("filtered", datastore=workspace.get_default_datastore())])
    with pytest.raises(DatastoreError, match="cannot be reached from Data Lake Analytics"):
        build(workspace, step).execute(context(FakeTI()))
    assert adla.submitted() == []
