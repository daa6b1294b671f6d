"""Runs through Airflow: a 10-step chain of no-op scripts as a pipeline (first run, fully reused run)
against the same chain as a hand-written DAG of ``BashOperator`` s, all run the same way (``DAG.test``).

Usage: ``python bench/runs.py WORKDIR RESULTS.json`` (run by ``bench/run.py`` in a fresh interpreter, so
Airflow reads this run's ``AIRFLOW_HOME``). Prints nothing but errors; writes the times as JSON.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

STEPS = 10
REPEATS = 3
NOOP = "import os, sys\nos.makedirs(sys.argv[1], exist_ok=True)\n"

BASH_DAG = '''"""Benchmark baseline: {steps} BashOperators running the same no-op script, in a chain."""
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

with DAG("bash_chain", schedule=None) as dag:
    previous = None
    for i in range({steps}):
        task = BashOperator(task_id=f"s{{i}}", bash_command="{python} {script} {out}/s{{i}}")
        if previous is not None:
            previous >> task
        previous = task
'''


def chain_steps(src: Path) -> list:
    """The chain as v1 steps: ``s<i>`` runs ``noop.py`` on its output ``d<i>``, after ``s<i-1>`` (whose
    output it reads)."""
    from aml_airflow_provider.pipeline.core import PipelineData
    from aml_airflow_provider.pipeline.steps import PythonScriptStep

    data = [PipelineData(f"d{i}") for i in range(STEPS)]
    return [
        PythonScriptStep(
            "noop.py",
            name=f"s{i}",
            arguments=[data[i]],
            outputs=[data[i]],
            inputs=[data[i - 1]] if i else [],
            source_directory=src,
        )
        for i in range(STEPS)
    ]


def load(path: Path):
    """The ``dag`` defined in a DAG file."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(workdir: Path, results: Path) -> None:
    os.environ["AIRFLOW_HOME"] = str(workdir / "airflow")
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "ERROR"
    from aml_airflow_provider.core import Experiment, Workspace
    from aml_airflow_provider.pipeline.core import Pipeline

    ws = Workspace.create("runbench", exist_ok=True, show_output=False)
    src = workdir / "src"
    src.mkdir(exist_ok=True)
    (src / "noop.py").write_text(NOOP)

    def pipeline() -> Pipeline:
        return Pipeline(ws, chain_steps(src))

    dags = ws._deployment.dags_folder
    dags.mkdir(parents=True, exist_ok=True)
    bash_file = dags / "bash_chain.py"
    bash_file.write_text(
        BASH_DAG.format(steps=STEPS, python=sys.executable, script=src / "noop.py", out=workdir / "bash-out")
    )
    experiment = Experiment(ws, "reuse_chain")
    bash_dag = load(bash_file)
    # Warm up: the first DAG.test of a process starts Airflow's in-process execution API.
    bash_dag.test()
    experiment.submit(pipeline())

    times: dict[str, list[float]] = {"bash": [], "first": [], "reused": []}
    for _ in range(REPEATS):
        times["bash"].append(timed(bash_dag.test))
        times["first"].append(timed(lambda: experiment.submit(pipeline(), regenerate_outputs=True)))
        started = time.perf_counter()
        run = experiment.submit(pipeline())
        times["reused"].append(time.perf_counter() - started)
        if not all(step.is_reused for step in run.get_steps()):
            raise RuntimeError("the second run of an unchanged pipeline did not reuse every step")
    results.write_text(
        json.dumps(
            {
                "steps": STEPS,
                "repeats": REPEATS,
                "medians": {k: statistics.median(v) for k, v in times.items()},
                "all": times,
            }
        )
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
