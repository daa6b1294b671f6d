"""A Celery worker is SIGKILLed while it publishes a step's output; the retry on the other worker
must leave a complete output, and the reuse index must point at it and at nothing partial.

The deployment is the session's ``celery_airflow_server`` (two workers, one task at a time each,
``default_task_retries=1``). The step writes many files; the worker is killed once the first of
them have reached the blob container, so the killed try leaves part of its output behind at the
very location the retry publishes to.
"""

from __future__ import annotations

import json
import time

import pytest
import requests
from azure.storage.blob import BlobServiceClient

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.deployment.celery import workers_on_queue
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineRun
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.runtime.reuse import REUSE_ROOT
from tests.server.conftest import workspace_on
from tests.support.waiting import wait_until

pytestmark = pytest.mark.server

FILES = 600
SIZE = 32 * 1024
#: The file only the killed try writes: it sorts first, so it is among the first blobs uploaded.
FIRST_TRY_ONLY = "0-first-try-only.txt"

#: Writes FILES files (each starting with the worker's name); the first try also writes FIRST_TRY_ONLY.
WRITER = f"""
import os, pathlib, random, sys
markers, out = pathlib.Path(sys.argv[1]), sys.argv[2]
worker = os.environ["AML_TEST_WORKER"]
first = not any(markers.iterdir())
(markers / worker).write_text("started")
os.makedirs(out, exist_ok=True)
if first:
    pathlib.Path(out, "{FIRST_TRY_ONLY}").write_text(worker)
for i in range({FILES}):
    with open(os.path.join(out, f"part-{{i:04d}}.bin"), "wb") as fh:
        fh.write(worker.encode() + b"\\n" + random.Random(f"part-{{i}}").randbytes({SIZE}))
print("wrote", {FILES}, "files on", worker)
"""


@pytest.fixture(scope="module")
def cluster(celery_airflow_server, azurite, tmp_path_factory):
    """A workspace of its own in the Celery deployment, its data on the session's Azurite."""
    with workspace_on(celery_airflow_server, azurite, "faults-kill-ws") as (ws, _):
        yield ws, celery_airflow_server, tmp_path_factory.mktemp("kill-src")


def task_instance(server, run: PipelineRun, task_id: str) -> dict:
    response = requests.get(
        f"{server.url}/api/v2/dags/{run.dag_id}/dagRuns/{run.id}/taskInstances/{task_id}",
        headers=server.headers(),
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def read_json(container, path: str) -> dict:
    return json.loads(container.download_blob(path).readall())


def test_a_worker_killed_while_publishing_leaves_a_complete_output_and_a_right_reuse_index(cluster, azurite, tmp_path):
    ws, server, src = cluster
    (src / "writer.py").write_text(WRITER)
    markers = tmp_path / "markers"
    markers.mkdir()
    store = Datastore(ws, "workspaceblobstore")
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        store.container_name
    )

    def pipeline() -> Pipeline:
        out = PipelineData("parts", datastore=store)
        step = PythonScriptStep(
            "writer.py", name="writer", arguments=[str(markers), out], outputs=[out], source_directory=src
        )
        return Pipeline(ws, [step])

    experiment = Experiment(ws, "Faults_Kill_Publish")
    run = experiment.submit(pipeline())

    def published_so_far() -> list[str]:
        """The blobs of the step's output, as any client of the container sees them."""
        return [
            b.name
            for b in container.list_blobs(name_starts_with=f"azureml/{run.dag_id}/")
            if "/writer/parts/" in b.name
        ]

    # Kill the worker once the first try's own file is up, while the rest is still on its way.
    wait_until(
        "the first try to start publishing",
        lambda: any(p.endswith(FIRST_TRY_ONLY) for p in published_so_far()),
        interval=0.05,
    )
    victim = next(markers.iterdir()).name
    server.kill_worker(victim)
    try:
        time.sleep(1)
        left_behind = published_so_far()
        assert 0 < len(left_behind) <= FILES, f"the kill did not land mid-publish ({len(left_behind)} files up)"
        run = PipelineRun.get(ws, run.id)
        assert run.wait_for_completion(show_output=False, timeout_seconds=420) == "Finished"
    finally:
        server.start_worker(victim)
        # Back in service before anything else is queued (later tests count on both workers).
        broker = server.env["AIRFLOW__CELERY__BROKER_URL"]
        wait_until(
            f"worker {victim} to serve again",
            lambda: [w.split("@")[0] for w in workers_on_queue("default", broker, timeout=2)] == ["w1", "w2"],
            interval=1,
        )

    survivor = ({"w1", "w2"} - {victim}).pop()
    ti = task_instance(server, run, "writer")
    assert (ti["try_number"], ti["hostname"]) == (2, survivor)

    # The output holds exactly the retry's files, each complete: the killed try's are gone.
    step_run = run.find_step_run("writer")[0]
    ref = step_run.get_output_data("parts")
    target = tmp_path / "parts"
    assert ref.download(str(target), show_progress=False) == FILES
    published = target / ref.path_on_datastore
    assert sorted(p.name for p in published.iterdir()) == [f"part-{i:04d}.bin" for i in range(FILES)]
    assert all(p.read_bytes().startswith(f"{survivor}\n".encode()) for p in published.iterdir())
    assert all(p.stat().st_size == len(survivor) + 1 + SIZE for p in published.iterdir())

    # The reuse index names this run's complete output, and nothing else: the killed try recorded nothing.
    path = ref.path_on_datastore
    fingerprint = step_run.get_details()["properties"]["azureml.fingerprint"]
    entries = [b.name for b in container.list_blobs(name_starts_with=f"{REUSE_ROOT}/fingerprints/")]
    assert entries == [f"{REUSE_ROOT}/fingerprints/{fingerprint}.json"]
    entry = read_json(container, entries[0])
    assert entry["step_run"]["id"] == f"{run.id}.writer"
    assert entry["outputs"]["parts"]["files"] == FILES
    assert entry["outputs"]["parts"]["uri"].endswith(f"/paths/{path}")
    assert read_json(container, f"{REUSE_ROOT}/steps/{run.dag_id}/writer.json") == entry

    # The next identical submission reuses that run, and so hands on the complete output.
    again = experiment.submit(pipeline())
    assert again.wait_for_completion(show_output=False, timeout_seconds=420) == "Finished"
    reused = again.find_step_run("writer")[0]
    assert reused.reused_run_id == f"{run.id}.writer"
    assert reused.get_output_data("parts").path_on_datastore == path
    assert sorted(m.name for m in markers.iterdir()) == sorted({victim, survivor})  # the script did not run again
