"""Against a real Airflow (API server, scheduler, DAG processor, triggerer on PostgreSQL) with Azurite:
publish, the REST endpoint exactly as the seed article calls it, its error answers, Airflow's own
REST API, and the SDK working through the server.
"""

from __future__ import annotations

import time

import pytest
import requests

from aml_airflow_provider.core import Experiment, Workspace
from aml_airflow_provider.exceptions import WorkspaceException
from aml_airflow_provider.pipeline.core import Pipeline, PipelineEndpoint
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from tests.server.conftest import build, output_of, wait_run

pytestmark = pytest.mark.server


def test_published_endpoint_called_like_the_seed_article(remote, airflow_server, tmp_path):
    ws, auth, src = remote
    published_pipeline1 = build(ws, src).publish(
        name="My_Published_Pipeline", description="My Published Pipeline Description"
    )
    assert published_pipeline1.endpoint == f"{airflow_server.url}/aml/pipelines/{published_pipeline1.id}/submit"

    aad_token = auth.get_authentication_header()
    response = requests.post(
        published_pipeline1.endpoint,
        headers=aad_token,
        json={"ExperimentName": "My_Pipeline", "ParameterAssignments": {"pipeline_arg": 20}},
    )
    assert response.status_code == 200, response.text
    run_id = response.json()["Id"]
    status_url = f"{airflow_server.url}/aml/pipelines/{published_pipeline1.id}/runs/{run_id}"
    run = wait_run(ws, run_id)
    assert output_of(ws, run, tmp_path) == {"pipeline_arg": 20}
    assert requests.get(status_url, headers=aad_token).json()["Status"] == "Finished"
    assert run.get_metrics() == {"compare.py": {"doubled": 40}}
    assert "compared with 20" in run.find_step_run("compare.py")[0].get_job_log()

    # Values arrive as strings in v1 (ParameterAssignments is a {str: str} map): converted to int.
    text = requests.post(
        published_pipeline1.endpoint,
        headers=aad_token,
        json={"ExperimentName": "My_Pipeline", "ParameterAssignments": {"pipeline_arg": "7"}},
    )
    assert output_of(ws, wait_run(ws, text.json()["Id"]), tmp_path) == {"pipeline_arg": 7}

    # Airflow's own REST API runs the published pipeline the same way.
    plain = requests.post(
        f"{airflow_server.url}/api/v2/dags/{published_pipeline1.dag_id}/dagRuns",
        headers=aad_token,
        json={"logical_date": None, "conf": {"pipeline_arg": 30}},
    )
    assert plain.status_code == 200, plain.text
    assert output_of(ws, wait_run(ws, plain.json()["dag_run_id"]), tmp_path) == {"pipeline_arg": 30}


def test_endpoint_answers_401_403_404_400_and_never_500(remote, airflow_server):
    ws, auth, src = remote
    published = build(ws, src).publish(name="Guarded")
    body = {"ExperimentName": "Guarded_Exp", "ParameterAssignments": {"pipeline_arg": 1}}
    admin = auth.get_authentication_header()

    def post(url=published.endpoint, headers=admin, json_body=body):
        return requests.post(url, headers=headers, json=json_body, timeout=30)

    assert post(headers={}).status_code == 401
    airflow_own = requests.get(f"{airflow_server.url}/api/v2/dags", headers={"Authorization": "Bearer nonsense"})
    assert post(headers={"Authorization": "Bearer nonsense"}).status_code == airflow_own.status_code
    viewer = {"Authorization": f"Bearer {airflow_server.token('viewer')}"}
    assert post(headers=viewer).status_code == 403
    assert post(url=f"{airflow_server.url}/aml/pipelines/no-such-id/submit").status_code == 404
    unknown = post(json_body={"ExperimentName": "E", "ParameterAssignments": {"pipeline_agr": 1}})
    assert unknown.status_code == 400 and "pipeline_agr" in unknown.json()["detail"]
    bad_value = post(json_body={"ExperimentName": "E", "ParameterAssignments": {"pipeline_arg": "ten"}})
    assert bad_value.status_code == 400 and "pipeline_arg" in bad_value.json()["detail"]
    for broken in (
        {"ParameterAssignments": {}},
        {"ExperimentName": "E", "ParameterAssignments": [1, 2]},
        {"ExperimentName": "bad name!"},
        {"ExperimentName": "E", "DataPathAssignments": {"x": 1}},
    ):
        assert post(json_body=broken).status_code == 400, broken
    assert requests.post(published.endpoint, headers=admin, data="not json", timeout=30).status_code == 400
    openapi = requests.get(f"{airflow_server.url}/aml/openapi.json", timeout=30).json()
    assert "/pipelines/{pipeline_id}/submit" in openapi["paths"]


def test_sdk_works_through_the_server(remote, airflow_server, tmp_path):
    ws, auth, src = remote
    # Experiment.submit on a remote workspace writes the DAG there and starts a run (it does not wait).
    run = Experiment(ws, "Remote_Exp").submit(build(ws, src), pipeline_parameters={"pipeline_arg": 5})
    assert run.wait_for_completion(show_output=False, timeout_seconds=180) == "Finished"
    assert output_of(ws, run, tmp_path) == {"pipeline_arg": 5}
    assert [s.get_status() for s in run.get_steps()] == ["Finished"]

    # A pipeline endpoint: a stable URL over versions.
    endpoint = PipelineEndpoint.publish(ws, "compare-endpoint", build(ws, src), "versions of compare")
    submitted = requests.post(
        endpoint.endpoint,
        headers=auth.get_authentication_header(),
        json={"ExperimentName": "Endpoint_Exp", "ParameterAssignments": {"pipeline_arg": 3}},
    )
    assert submitted.status_code == 200, submitted.text
    assert output_of(ws, wait_run(ws, submitted.json()["Id"]), tmp_path) == {"pipeline_arg": 3}
    assert PipelineEndpoint.get(ws, name="compare-endpoint").default_version == "0"

    # PublishedPipeline.submit and cancel() through the server.
    (src / "slow.py").write_text("import time\nprint('waiting', flush=True)\ntime.sleep(600)\n")
    slow = Pipeline(ws, [PythonScriptStep("slow.py", name="slow", source_directory=src)]).publish(name="Slow")
    slow_run = slow.submit(ws, "Slow_Exp")
    deadline = time.monotonic() + 120
    while not any(s.get_status() == "Running" for s in slow_run.get_steps()) and time.monotonic() < deadline:
        time.sleep(1)
    slow_run.cancel()
    assert slow_run.wait_for_completion(show_output=False, raise_on_error=False, timeout_seconds=120) == "Canceled"


def test_recurrence_schedule_runs_at_its_times_until_disabled(remote, airflow_server):
    from datetime import UTC, datetime

    from aml_airflow_provider.pipeline.core import Schedule, ScheduleRecurrence

    ws, _, src = remote
    published = build(ws, src).publish(name="Every minute")
    schedule = Schedule.create(
        ws,
        name="every-minute",
        pipeline_id=published.id,
        experiment_name="Scheduled_Exp",
        recurrence=ScheduleRecurrence(frequency="Minute", interval=1),
        pipeline_parameters={"pipeline_arg": 11},
    )
    assert Schedule.get(ws, schedule.id).status == "Active"
    assert schedule.id in [s.id for s in Schedule.get_all(ws, pipeline_id=published.id)]
    deadline = time.monotonic() + 200
    while len(schedule.get_pipeline_runs()) < 2 and time.monotonic() < deadline:
        time.sleep(2)
    runs = schedule.get_pipeline_runs()
    assert len(runs) >= 2, "two minutes passed without two scheduled runs"
    ticks = [r.run_after for r in ws._deployment.list_dag_runs(schedule.dag_id)]
    assert all(t.second == 0 for t in ticks), ticks  # at its times: on the minute
    assert runs[-1].wait_for_completion(show_output=False, timeout_seconds=120) == "Finished"
    assert runs[-1].get_details()["parameters"]["pipeline_arg"] == 11

    schedule.disable()
    assert Schedule.get(ws, schedule.id).status == "Disabled"
    assert schedule.id not in [s.id for s in Schedule.get_all(ws)]
    disabled_at, count = datetime.now(UTC), len(ws._deployment.list_dag_runs(schedule.dag_id))
    time.sleep(75)  # past the next minute
    assert len(ws._deployment.list_dag_runs(schedule.dag_id)) == count, f"ran after being disabled at {disabled_at}"


def test_a_rejected_connection_never_echoes_its_password(remote):
    ws, _, _ = remote
    secret = "AccountKey-that-must-not-leak-123"
    # Airflow's 422 answer repeats the whole request body, password included.
    with pytest.raises(WorkspaceException) as raised:
        ws._deployment._call("POST", "/api/v2/connections", json={"connection_id": "aml_bad", "password": secret})
    assert "422" in str(raised.value) and "conn_type" in str(raised.value)
    assert secret not in str(raised.value)


def test_workspace_get_reaches_the_server(remote, airflow_server):
    ws, auth, _ = remote
    again = Workspace.get(ws.name, auth, airflow_url=airflow_server.url)
    assert again.get_default_datastore().name == "workspaceblobstore"
    assert again.datastores.keys() == ws.datastores.keys()
