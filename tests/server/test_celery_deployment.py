"""A distributed deployment on this machine: the CeleryExecutor, Redis, PostgreSQL, two Celery workers
(separate processes with their own working directories) and Azurite.

The workers report their names (``w1``, ``w2``) as the hosts of the task instances they run (see
``tests/support/worker_name.py``), which Airflow's REST API shows.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from itertools import pairwise

import pytest
import requests

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.core.compute import AmlCompute, ComputeTarget
from aml_airflow_provider.deployment.celery import workers_on_queue
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineRun
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from tests.server.conftest import wait_run, workspace_on
from tests.support.airflow_server import REPO
from tests.support.waiting import wait_until

pytestmark = pytest.mark.server

#: Hang guard for one pipeline run on the Celery deployment.
RUN_TIMEOUT = 420


@pytest.fixture(scope="module")
def cluster(celery_airflow_server, azurite, tmp_path_factory):
    """A workspace in the Celery deployment (see ``workspace_on``), the deployment, and a source folder."""
    with workspace_on(celery_airflow_server, azurite, "celery-ws") as (ws, _):
        yield ws, celery_airflow_server, tmp_path_factory.mktemp("celery-src")


def task_instances(server, run: PipelineRun) -> dict[str, dict]:
    """The run's task instances as Airflow's REST API shows them (hostname, queue, pool, try number...)."""
    body = requests.get(
        f"{server.url}/api/v2/dags/{run.dag_id}/dagRuns/{run.id}/taskInstances",
        headers=server.headers(),
        timeout=30,
    ).json()
    return {t["task_id"]: t for t in body["task_instances"]}


def test_the_example_pipeline_fans_out_over_both_workers(cluster, tmp_path):
    ws, server, _ = cluster
    sys.path.insert(0, str(REPO / "dags"))
    try:
        from compare_models.pipeline import build_pipeline, upload_raw_data
    finally:
        sys.path.remove(str(REPO / "dags"))
    upload_raw_data(ws)

    submitted = Experiment(ws, "Compare_Models_Exp").submit(build_pipeline(ws), pipeline_parameters={"pipeline_arg": 5})
    run = wait_run(ws, submitted.id, timeout=RUN_TIMEOUT)

    tis = task_instances(server, run)
    hosts = {task: ti["hostname"] for task, ti in tis.items()}
    # Each worker takes one task at a time: the two training steps, queued together, go one to each.
    assert {hosts["train_logistic"], hosts["train_random_forest"]} == {"w1", "w2"}, hosts
    assert all(ti["state"] == "success" and ti["try_number"] == 1 for ti in tis.values())
    # compare read the models of both workers: only the datastore connects them.
    ref = run.find_step_run("compare")[0].get_output_data("comparison")
    ref.download(str(tmp_path), show_progress=False)
    result = json.loads((tmp_path / ref.path_on_datastore / "comparison.json").read_text())
    assert result["winner"] in ("logistic", "random_forest") and len(result["first_predictions"]) == 5
    for worker in ("w1", "w2"):
        workdir = server.home.parent / f"worker-{worker}"
        assert not any(p.name == "comparison.json" or p.suffix == ".pkl" for p in workdir.rglob("*")), worker


def test_a_cluster_of_one_node_serialises_its_steps_on_its_queue(cluster):
    ws, server, src = cluster
    (src / "busy.py").write_text("import time\ntime.sleep(3)\n")
    serial = ComputeTarget.create(ws, "serial1", AmlCompute.provisioning_configuration(max_nodes=1))
    steps = [
        PythonScriptStep("busy.py", name=f"part_{i}", source_directory=src, compute_target=serial, allow_reuse=False)
        for i in range(3)
    ]

    run = wait_run(ws, Experiment(ws, "Serial_Exp").submit(Pipeline(ws, steps)).id, timeout=RUN_TIMEOUT)

    tis = task_instances(server, run)
    assert {(ti["queue"], ti["pool"]) for ti in tis.values()} == {("serial1", serial.pool)}
    # What get_status() reports for a Celery deployment reached in-process: the workers on the queue.
    broker = server.env["AIRFLOW__CELERY__BROKER_URL"]
    assert [w.split("@")[0] for w in workers_on_queue("serial1", broker, timeout=5)] == ["w1", "w2"]
    assert workers_on_queue("no-such-queue", broker, timeout=5) == []
    spans = sorted(
        (datetime.fromisoformat(ti["start_date"]), datetime.fromisoformat(ti["end_date"])) for ti in tis.values()
    )
    assert all(later[0] >= earlier[1] for earlier, later in pairwise(spans)), spans


KILLABLE = """
import json, os, pathlib, sys, time
markers, out = pathlib.Path(sys.argv[1]), sys.argv[2]
os.makedirs(out, exist_ok=True)
first = not any(markers.iterdir())
(markers / os.environ["AML_TEST_WORKER"]).write_text("started")
if first:
    pathlib.Path(out, "partial.txt").write_text("written by the try that is killed")
    time.sleep(600)  # killed here
with open(os.path.join(out, "result.json"), "w") as fh:
    json.dump({"worker": os.environ["AML_TEST_WORKER"]}, fh)
"""


def test_a_killed_worker_s_step_finishes_on_the_other_after_a_retry(cluster, tmp_path):
    ws, server, src = cluster
    (src / "killable.py").write_text(KILLABLE)
    markers = tmp_path / "markers"
    markers.mkdir()
    out = PipelineData("result", datastore=Datastore(ws, "workspaceblobstore"))
    step = PythonScriptStep(
        "killable.py",
        name="long",
        arguments=[str(markers), out],
        outputs=[out],
        source_directory=src,
        allow_reuse=False,
    )
    run = Experiment(ws, "Kill_Exp").submit(Pipeline(ws, [step]))

    wait_until("the step to start", lambda: any(markers.iterdir()), interval=0.5)
    victim = next(markers.iterdir()).name
    server.kill_worker(victim)
    try:
        run = wait_run(ws, run.id, timeout=RUN_TIMEOUT)
    finally:
        server.start_worker(victim)

    ti = task_instances(server, run)["long"]
    survivor = ({"w1", "w2"} - {victim}).pop()
    assert (ti["try_number"], ti["hostname"]) == (2, survivor)
    target = tmp_path / "result"
    ref = run.find_step_run("long")[0].get_output_data("result")
    ref.download(str(target), show_progress=False)
    published = target / ref.path_on_datastore
    # Only the successful try's output was published: the killed try's partial file never became visible.
    assert sorted(p.name for p in published.iterdir()) == ["result.json"]
    assert json.loads((published / "result.json").read_text()) == {"worker": survivor}
