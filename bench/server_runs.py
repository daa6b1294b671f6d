"""Runs on an Airflow server: the no-op chain of ``runs.py`` as a published pipeline (every step runs;
every step reused) against the same chain of ``BashOperator`` s, on one LocalExecutor deployment.

The deployment is the one the tests use (``tests/support/airflow_server.py``: API server, scheduler,
DAG processor and triggerer on a fresh PostgreSQL database). The workspace is made in it with its
default datastores as local folders, as on the embedded default, so both DAGs write local files.
Each DAG is triggered through the REST API, one run at a time, the variants taking turns; a run's
time is Airflow's own (its ``end_date`` minus its ``start_date``).

Usage: ``python bench/server_runs.py WORKDIR RESULTS.json`` (run by ``bench/run.py``).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import runs  # noqa: E402  (bench/ is on sys.path: this file is run as a script)

from tests.support.airflow_server import AirflowServer, make_server  # noqa: E402

REPEATS = 3
#: Hang guard for one run (a 10-step chain takes seconds to a minute here).
RUN_TIMEOUT = 600


def _api(server: AirflowServer, method: str, path: str, **kwargs: Any) -> Any:
    import requests

    response = requests.request(method, f"{server.url}/api/v2{path}", headers=server.headers(), timeout=60, **kwargs)
    response.raise_for_status()
    return response.json()


def _wait_parsed(server: AirflowServer, dag_ids: list[str]) -> None:
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        known = {d["dag_id"] for d in _api(server, "GET", "/dags", params={"limit": 100})["dags"]}
        if set(dag_ids) <= known:
            return
        time.sleep(1)
    raise RuntimeError(f"the DAG processor did not load {dag_ids}")


def _run(server: AirflowServer, dag_id: str, conf: dict[str, Any]) -> float:
    """Trigger ``dag_id``, wait for the run to end; its duration as Airflow recorded it (s)."""
    from datetime import datetime

    run_id = _api(server, "POST", f"/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": conf})["dag_run_id"]
    deadline = time.monotonic() + RUN_TIMEOUT
    while time.monotonic() < deadline:
        run = _api(server, "GET", f"/dags/{dag_id}/dagRuns/{run_id}")
        if run["state"] in ("success", "failed"):
            if run["state"] != "success":
                raise RuntimeError(f"{dag_id} run {run_id} failed:\n{server.log('scheduler')[-3000:]}")
            return (datetime.fromisoformat(run["end_date"]) - datetime.fromisoformat(run["start_date"])).total_seconds()
        time.sleep(0.5)
    raise RuntimeError(f"{dag_id} run {run_id} did not end within {RUN_TIMEOUT} s")


def _all_reused(server: AirflowServer, dag_id: str) -> bool:
    from aml_airflow_provider import xcom

    runs_ = _api(server, "GET", f"/dags/{dag_id}/dagRuns", params={"order_by": "-start_date", "limit": 1})["dag_runs"]
    run_id = runs_[0]["dag_run_id"]
    for i in range(runs.STEPS):
        entry = _api(server, "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/s{i}/xcomEntries/{xcom.STEP_RUN}")
        value = entry["value"]
        facts = json.loads(value) if isinstance(value, str) else value
        if not facts.get(xcom.REUSED_FROM):
            return False
    return True


def main(workdir: Path, results: Path) -> None:
    server = make_server(workdir)
    server.start()
    try:
        # This process is a client of the deployment's database, as the SDK on its machine would be.
        os.environ.update(server.env)
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
        from aml_airflow_provider.core import Workspace
        from aml_airflow_provider.pipeline.core import Pipeline

        ws = Workspace.create("serverbench", exist_ok=True, show_output=False)
        src = workdir / "src"
        src.mkdir(exist_ok=True)
        (src / "noop.py").write_text(runs.NOOP)
        published = Pipeline(ws, runs.chain_steps(src)).publish(name="noop_chain")
        pipeline_dag = published.dag_id
        (server.dags_folder / "bash_chain.py").write_text(
            runs.BASH_DAG.format(steps=runs.STEPS, python=sys.executable, script=src / "noop.py", out=workdir / "out")
        )
        _wait_parsed(server, [pipeline_dag, "bash_chain"])
        # Warm-up: the first run of each DAG pays one-off costs (the snapshot upload, imports' caches).
        _run(server, "bash_chain", {})
        _run(server, pipeline_dag, {})
        times: dict[str, list[float]] = {"bash": [], "first": [], "reused": []}
        for _ in range(REPEATS):
            times["bash"].append(_run(server, "bash_chain", {}))
            times["first"].append(_run(server, pipeline_dag, {"regenerate_outputs": True}))
            times["reused"].append(_run(server, pipeline_dag, {}))
            if not _all_reused(server, pipeline_dag):
                raise RuntimeError("a run of the unchanged published pipeline did not reuse every step")
    finally:
        server.stop()
    results.write_text(
        json.dumps(
            {
                "steps": runs.STEPS,
                "repeats": REPEATS,
                "medians": {k: statistics.median(v) for k, v in times.items()},
                "all": times,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
