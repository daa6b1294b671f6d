"""A DatabricksStep on the real Airflow server: the scheduler runs it, the triggerer waits for the run.

The Databricks workspace is the loopback stand-in (written from the public REST reference); the
server's workers and triggerer reach it through the compute's Airflow connection, created over the
REST API. The server is configured with ``[operators] default_deferrable = True``.
"""

from __future__ import annotations

import requests

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.core.compute import ComputeTarget, DatabricksCompute
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import DatabricksStep
from tests.server.conftest import wait_run
from tests.support.databricks_server import DatabricksServer


def test_deferrable_databricks_step_waits_in_the_triggerer(remote, airflow_server):
    ws, _, _ = remote
    with DatabricksServer() as dbx:
        config = DatabricksCompute.attach_configuration("rg", "dbx-ws", dbx.token, host=dbx.url)
        ComputeTarget.attach(ws, "dbx-remote", config)
        found = ComputeTarget(ws, "dbx-remote")
        assert isinstance(found, DatabricksCompute) and found.host == "127.0.0.1"
        dbx.script_next_run(
            [("PENDING", None, "Waiting for cluster"), ("RUNNING", None, "In run"), ("TERMINATED", "SUCCESS", "")],
            notebook_result="trained",
        )
        out = PipelineData("scores", datastore=Datastore(ws, "workspaceblobstore"))
        step = DatabricksStep(
            name="score",
            outputs=[out],
            notebook_path="/Shared/score",
            notebook_params={"threshold": PipelineParameter("threshold", default_value=0.8)},
            existing_cluster_id="0101-shared",
            compute_target=found,
        )
        submitted = Experiment(ws, "remote_databricks").submit(
            Pipeline(ws, [step]), pipeline_parameters={"threshold": 0.9}
        )
        run = wait_run(ws, submitted.id)

        (payload,) = dbx.submitted()
        params = payload["tasks"][0]["notebook_task"]["base_parameters"]
        assert params["threshold"] == "0.9"
        assert params["scores"].startswith("wasbs://")
        # The triggerer's async client sends runs/get arguments as a JSON body; the worker's sync one
        # (run page URL, output) as a query string: both waited on this run.
        gets = dbx.requests_to("jobs/runs/get")
        assert any(r.body for r in gets), "the run was polled from the triggerer"
        assert len(dbx.submitted()) == 1

        (step_run,) = run.find_step_run("score")
        assert step_run.get_status() == "Finished"
        xcoms = step_run._xcoms()
        run_id = xcoms["run_id"]
        assert str(xcoms["notebook_result"]) == "trained"
        links = requests.get(
            f"{airflow_server.url}/api/v2/dags/remote_databricks/dagRuns/{submitted.id}/taskInstances/score/links",
            headers=airflow_server.headers(),
            timeout=30,
        ).json()["extra_links"]
        assert links["See Databricks Job Run"].endswith(f"#job/{dbx.run(run_id)['job_id']}/run/{run_id}")
        # The token stayed in the connection.
        assert dbx.token not in str(xcoms) + airflow_server.log("scheduler") + airflow_server.log("triggerer")
    found.detach()
