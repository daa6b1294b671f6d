"""An AdlaStep on the real Airflow server: the job is submitted by a worker and waited for in the triggerer.

The server runs with ``[operators] default_deferrable = True``; the account is the loopback ADLA job
service stand-in, reached with a static bearer token kept in the compute's Airflow connection.
"""

from __future__ import annotations

import requests

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import AdlaStep
from tests.server.conftest import wait_run
from tests.support.adla_server import AdlaServer

TOKEN = "adla-static-token-for-the-server-test"


def test_adla_step_waits_in_the_triggerer(remote, airflow_server, tmp_path):
    ws, _, _ = remote
    (tmp_path / "copy.usql").write_text('OUTPUT (SELECT 1 AS one) TO "@@copied@@/one.csv" USING Outputters.Csv();\n')
    with AdlaServer(static_token=TOKEN) as adla:
        config = AdlaCompute.attach_configuration("rg", "myadla", endpoint=adla.url, access_token=TOKEN)
        target = ComputeTarget.attach(ws, "adla-remote", config)
        adla.script_next_job(["Accepted", "Compiling", "Queued", "Running", "Ended"])
        step = AdlaStep(
            "copy.usql",
            outputs=[PipelineData("copied", datastore=Datastore(ws, "workspaceblobstore"))],
            compute_target=target,
            source_directory=tmp_path,
        )
        submitted = Experiment(ws, "remote_adla").submit(Pipeline(ws, [step]))
        run = wait_run(ws, submitted.id)

        (body,) = adla.submitted()
        assert "@@" not in body["properties"]["script"]
        (step_run,) = run.find_step_run("copy.usql")
        job_id = step_run._xcoms()["adla_job_id"]
        # Polled past "Running" to "Ended" by the triggerer (the worker only submitted and finished).
        gets = [r for r in adla.jobs_requests("GET") if r.path.lower().endswith(job_id)]
        assert len(gets) >= 4
        task_id = step_run._step.task_id
        log = requests.get(
            f"{airflow_server.url}/api/v2/dags/remote_adla/dagRuns/{submitted.id}/taskInstances/{task_id}/logs/1",
            headers={**airflow_server.headers(), "Accept": "application/json"},
            timeout=30,
        ).text
        assert f"Data Lake Analytics job {job_id}: Running" in log, "the trigger's polling is in the task log"
        assert TOKEN not in airflow_server.log("scheduler") + airflow_server.log("triggerer")
    target.detach()
