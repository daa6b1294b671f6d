"""Parse DAG files the way Airflow's DAG processor does, in forked children; write the times as JSON.

Usage: ``python bench/parse_worker.py PAIRS.json RESULTS.json`` (run by ``bench/run.py``).

The DAG processor manager pre-imports the ``airflow.*`` modules a file names, freezes its heap
(``gc.freeze()``, so children do not copy or scan it) and forks a child per parse; the child checks
the file's stability, fills a ``BundleDagBag`` from it and serialises each DAG. This worker does the
same in a fresh interpreter, so nothing the benchmark itself imported is cached. Each file is
byte-compiled first, as the processor's first parse would have left it, then parsed in a new fork per
repetition, taking turns with the other file of its pair. A file's job may name modules to import in
the child before the parse: their import is timed separately, so the generated file's parse is
reported with and without importing the package.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import py_compile
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The names the processor's parsing code uses, taken from its module (which the manager has imported).
from airflow.dag_processing.processor import (
    BundleDagBag,
    DagSerialization,
    check_dag_file_stability,
    iter_airflow_imports,
)
from profiling import profile_call


def _parse(job: dict[str, Any]) -> BundleDagBag:
    """A ``BundleDagBag`` of the job's file, made with the processor's arguments."""
    return BundleDagBag(
        dag_folder=job["path"], bundle_path=Path(job["bundle"]), bundle_name="bench", load_op_links=False
    )


def _check_bag(bag: BundleDagBag, job: dict[str, Any]) -> Any:
    """The job's DAG from ``bag``; raise if the file did not parse into the expected DAG."""
    if bag.import_errors:
        raise RuntimeError(f"{job['path']}: import errors {bag.import_errors}")
    dag = bag.dags.get(job["dag_id"])
    if dag is None or len(dag.tasks) != job["tasks"]:
        found = None if dag is None else len(dag.tasks)
        raise RuntimeError(f"{job['path']}: expected DAG {job['dag_id']} with {job['tasks']} tasks, got {found}")
    return dag


class GcTimer:
    """Seconds spent in the garbage collector while registered in ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Seconds of each stage of processing the job's file (run in a fresh fork)."""
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"  # as the processor's parsing child
    t0 = time.perf_counter()
    for module in job["preload"]:
        importlib.import_module(module)
    t1 = time.perf_counter()
    check_dag_file_stability(job["path"])
    gc_timer = GcTimer()
    gc.callbacks.append(gc_timer)
    t2 = time.perf_counter()
    bag = _parse(job)
    t3 = time.perf_counter()
    gc.callbacks.remove(gc_timer)
    dag = _check_bag(bag, job)
    t4 = time.perf_counter()
    data = DagSerialization.to_dict(dag)
    t5 = time.perf_counter()
    return {
        "import": t1 - t0,
        "check": t2 - t1,
        "parse": t3 - t2,
        "parse_gc": gc_timer.seconds,
        "serialize": t5 - t4,
        "serialized_bytes": len(json.dumps(data, default=str)),
    }


def profile(job: dict[str, Any]) -> dict[str, Any]:
    """cProfile of parsing and serialising the job's file (package already imported)."""
    for module in job["preload"]:
        importlib.import_module(module)

    def parse_and_serialize() -> None:
        DagSerialization.to_dict(_check_bag(_parse(job), job))

    return profile_call(parse_and_serialize)


def in_fork(function: Callable[[dict[str, Any]], dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """Run ``function(job)`` in a forked child and return its JSON result; raise on the child's error."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            payload = {"result": function(job)}
        except BaseException:
            payload = {"error": traceback.format_exc()}
        with os.fdopen(write_fd, "w") as pipe:
            json.dump(payload, pipe)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    payload = json.loads(text) if text else {"error": "the child died without a result"}
    if "error" in payload:
        raise RuntimeError(f"{job['path']}:\n{payload['error']}")
    return payload["result"]


def prepare(job: dict[str, Any]) -> None:
    """What the processor manager does before forking: pre-import the file's Airflow modules.

    Also byte-compile the file, as the processor's first parse of it would have.
    """
    for module in iter_airflow_imports(job["path"]):
        importlib.import_module(module)
    py_compile.compile(job["path"], doraise=True)


def run_pair(pair: dict[str, Any]) -> list[dict[str, Any]]:
    """Parse the pair's files in turn, ``repeats`` times each in a new fork; return each file's runs.

    Taking turns gives both files the same share of whatever else the machine is doing.
    """
    files = pair["files"]
    for job in files:
        prepare(job)
    gc.collect()
    gc.freeze()
    runs: list[list[dict[str, Any]]] = [[] for _ in files]
    for _ in range(pair["repeats"]):
        for job, job_runs in zip(files, runs, strict=True):
            job_runs.append(in_fork(measure, job))
    return [
        {**job, "graph": pair["graph"], "runs": job_runs, "profile": in_fork(profile, job) if job["profile"] else None}
        for job, job_runs in zip(files, runs, strict=True)
    ]


def main(pairs_path: str, results_path: str) -> None:
    """Run every pair of ``pairs_path``; write the results, one per file, to ``results_path``."""
    pairs = json.loads(Path(pairs_path).read_text())
    Path(results_path).write_text(json.dumps([result for pair in pairs for result in run_pair(pair)]))


if __name__ == "__main__":
    main(*sys.argv[1:])
