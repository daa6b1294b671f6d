"""Faults: the scheduler and the triggerer restart while deferrable remote steps wait for their jobs.

One pipeline holds a DatabricksStep and an AdlaStep side by side. Both submit their job and defer; the
stand-ins keep the jobs running until the test ends them. While the task instances are DEFERRED, the
scheduler and the triggerer of the session's Airflow server are stopped (SIGTERM, or SIGKILL as a lost
machine), kept down a few seconds and started again with the same settings. The run must then resume:
the new triggerer polls the same Databricks run and ADLA job (never a second submission, never a
cancel), and the steps finish with their outputs, XComs and driver logs as without the restart.

A killed triggerer leaves its triggers assigned to a job that still looks alive; the new one takes them
over once that job's heartbeat is older than ``[triggerer] triggerer_health_check_threshold`` (30 s).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget, DatabricksCompute
from aml_airflow_provider.deployment.base import TaskRecord
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter, PipelineRun
from aml_airflow_provider.pipeline.steps import AdlaStep, DatabricksStep
from tests.server.conftest import wait_run
from tests.support.adla_server import AdlaServer
from tests.support.databricks_server import DatabricksServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.server

TOKEN = "adla-static-token-for-the-restart-test"
USQL = 'OUTPUT (SELECT 1 AS one) TO "@@copied@@/one.csv" USING Outputters.Csv();\n'
#: Hang guard for each wait (generous: a killed triggerer's triggers move after its 30 s heartbeat threshold).
WAIT_SECONDS = 240
DOWN_SECONDS = 3
RESTARTED = ("scheduler", "triggerer")


def _wait_for(what: str, check: Callable[[], Any]) -> Any:
    return wait_until(what, check, interval=0.5, timeout=WAIT_SECONDS)


def _task_states(ws, dag_id: str, run_id: str) -> dict[str, TaskRecord]:
    return {t.task_id: t for t in ws._deployment.task_instances(dag_id, run_id)}


def _dbx_polls(dbx: DatabricksServer, run_id: int, since: int = 0) -> list:
    """``runs/get`` of the run from the triggerer (its async client sends the arguments as a JSON body)."""
    return [
        r
        for r in dbx.requests[since:]
        if r.path.endswith("jobs/runs/get") and r.body and str(r.params.get("run_id")) == str(run_id)
    ]


def _adla_polls(adla: AdlaServer, job_id: str, since: int = 0) -> list:
    return [r for r in adla.requests[since:] if r.method == "GET" and r.path.lower().endswith(job_id.lower())]


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_remote_steps_resume_after_scheduler_and_triggerer_restart(remote, airflow_server, tmp_path, kill):
    ws, _, _ = remote
    how = "sigkill" if kill else "sigterm"
    short = "kill" if kill else "term"
    (tmp_path / "copy.usql").write_text(USQL)
    with DatabricksServer() as dbx, AdlaServer(static_token=TOKEN) as adla:
        dbx_target = ComputeTarget.attach(
            ws, f"dbx-rs-{short}", DatabricksCompute.attach_configuration("rg", "dbx-ws", dbx.token, host=dbx.url)
        )
        adla_target = ComputeTarget.attach(
            ws,
            f"adla-rs-{short}",
            AdlaCompute.attach_configuration("rg", "myadla", endpoint=adla.url, access_token=TOKEN),
        )
        # Both jobs stay running (the last scripted state sticks) until the test ends them.
        dbx.script_next_run(
            [("PENDING", None, "Waiting for cluster"), ("RUNNING", None, "In run")], notebook_result="scored"
        )
        adla.script_next_job(["Accepted", "Running"])
        store = Datastore(ws, "workspaceblobstore")
        score = DatabricksStep(
            name="score",
            outputs=[PipelineData("scores", datastore=store)],
            notebook_path="/Shared/score",
            notebook_params={"threshold": PipelineParameter("threshold", default_value=0.8)},
            existing_cluster_id="0101-shared",
            compute_target=dbx_target,
        )
        copy = AdlaStep(
            "copy.usql",
            outputs=[PipelineData("copied", datastore=store)],
            compute_target=adla_target,
            source_directory=tmp_path,
        )
        experiment = f"restart_deferred_{how}"
        submitted = Experiment(ws, experiment).submit(
            Pipeline(ws, [score, copy]), pipeline_parameters={"threshold": 0.9}
        )
        run = PipelineRun.get(ws, submitted.id)
        tasks = {step.name: step.task_id for step in run.spec.steps}
        score_task, copy_task = tasks["score"], tasks["copy.usql"]

        def both_deferred():
            states = _task_states(ws, experiment, submitted.id)
            return all(getattr(states.get(t), "state", None) == "deferred" for t in (score_task, copy_task)) and states

        before = _wait_for("both steps to defer", both_deferred)
        assert len(dbx.submitted()) == 1 and len(adla.submitted()) == 1
        dbx_run_id = run.find_step_run("score")[0]._xcoms()["run_id"]
        adla_job_id = run.find_step_run("copy.usql")[0]._xcoms()["adla_job_id"]
        _wait_for(
            "the triggerer to poll both jobs", lambda: _dbx_polls(dbx, dbx_run_id) and _adla_polls(adla, adla_job_id)
        )

        try:
            for name in RESTARTED:
                airflow_server.stop_component(name, kill=kill)
            # From here on, only a restarted triggerer can poll (no task runs: both are deferred).
            dbx_mark, adla_mark = len(dbx.requests), len(adla.requests)
            time.sleep(DOWN_SECONDS)
        finally:
            # Whatever happened, the session's server gets its components back (other tests use it).
            for name in RESTARTED:
                if airflow_server.processes[name].poll() is not None:
                    airflow_server.start_component(name)

        _wait_for(
            "the restarted triggerer to poll the same run and job",
            lambda: _dbx_polls(dbx, dbx_run_id, dbx_mark) and _adla_polls(adla, adla_job_id, adla_mark),
        )
        during = _task_states(ws, experiment, submitted.id)
        assert {t: during[t].state for t in (score_task, copy_task)} == {
            score_task: "deferred",
            copy_task: "deferred",
        }
        dbx.finish_run(dbx_run_id)
        adla.finish_job(adla_job_id)
        run = wait_run(ws, submitted.id)

        # Exactly one submission each, nothing cancelled: the resumed waits are on the first jobs.
        assert len(dbx.requests_to("jobs/runs/submit")) == 1
        assert len(adla.jobs_requests("PUT")) == 1
        assert dbx.cancelled == [] and adla.cancelled == []
        assert dbx.run(dbx_run_id)["state"]["result_state"] == "SUCCESS"
        assert adla.job(adla_job_id)["result"] == "Succeeded"

        after = _task_states(ws, experiment, submitted.id)
        for task in (score_task, copy_task):
            # Resumed from the deferral (execute_complete), not run again from the start.
            assert after[task].state == "success"
            assert after[task].try_number == before[task].try_number

        (score_run,) = run.find_step_run("score")
        xcoms = score_run._xcoms()
        assert xcoms["run_id"] == dbx_run_id
        assert str(xcoms["notebook_result"]) == "scored"
        widgets = dbx.submitted()[0]["tasks"][0]["notebook_task"]["base_parameters"]
        assert widgets["threshold"] == "0.9"
        assert score_run.get_output_data("scores").path_on_datastore in widgets["scores"]
        log = score_run.get_job_log()
        assert f"Databricks run {dbx_run_id}" in log and "Notebook exit value: scored" in log

        (copy_run,) = run.find_step_run("copy.usql")
        assert copy_run._xcoms()["adla_job_id"] == adla_job_id
        script = adla.submitted()[0]["properties"]["script"]
        assert copy_run.get_output_data("copied").path_on_datastore in script
        log = copy_run.get_job_log()
        assert f"Data Lake Analytics job {adla_job_id}" in log and "result: Succeeded" in log
        assert TOKEN not in airflow_server.log("triggerer") and dbx.token not in airflow_server.log("triggerer")
    dbx_target.detach()
    adla_target.detach()
