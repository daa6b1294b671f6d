"""Build each graph three ways: as an Azure ML pipeline, as its translated DAG, and as a plain DAG.

Importing this module imports Airflow: set ``AIRFLOW_HOME`` first.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param
from graphs import Graph

from aml_airflow_provider.core import Workspace
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from aml_airflow_provider.spec import PipelineSpec
from aml_airflow_provider.translate import build_dag

#: Every translated DAG has this trigger-form param; Airflow copies DAG params into each task (and
#: serialises them there), so the baselines get it too: the same DAG as far as a user can see.
BASELINE_PARAMS = {"regenerate_outputs": Param(False, type="boolean")}

#: The script every step runs; it only has to exist.
SCRIPT = "noop.py"


def build_pipeline(ws: Workspace, graph: Graph, source_dir: Path) -> Pipeline:
    """The graph as a v1-style pipeline: step ``s<i>`` writes ``d<i>`` and reads its producers' data."""
    data = [PipelineData(f"d{i}") for i in range(graph.size)]
    steps = []
    for i, producers in enumerate(graph.upstream):
        inputs = [data[u] for u in producers]
        steps.append(
            PythonScriptStep(
                SCRIPT,
                name=f"s{i}",
                arguments=[*inputs, "--output", data[i]],
                inputs=inputs,
                outputs=[data[i]],
                source_directory=source_dir,
            )
        )
    return Pipeline(workspace=ws, steps=steps)


def build_baseline_dag(graph: Graph) -> DAG:
    """The graph as a DAG of ``EmptyOperator`` s, written the way a person would in a DAG file."""
    with DAG(graph.name, schedule=None, catchup=False, params=BASELINE_PARAMS) as dag:
        tasks = [EmptyOperator(task_id=f"s{i}") for i in range(graph.size)]
        for u, v in graph.edges:
            tasks[u] >> tasks[v]
    return dag


def dag_edges(dag: DAG) -> set[tuple[str, str]]:
    """Every ``(upstream, downstream)`` task-id pair of ``dag``."""
    return {(task.task_id, down) for task in dag.tasks for down in task.downstream_task_ids}


def graph_edges(graph: Graph) -> set[tuple[str, str]]:
    """The edges of ``graph`` as task-id pairs."""
    return {(f"s{u}", f"s{v}") for u, v in graph.edges}


@dataclass(frozen=True)
class BuildTimes:
    """Median seconds of each phase of building one graph (``total`` is the median of per-run totals)."""

    model: float
    spec: float
    dag: float
    total: float
    baseline: float


def _time_once(ws: Workspace, graph: Graph, source_dir: Path) -> tuple[list[float], PipelineSpec]:
    """Seconds of ``[model, spec, dag, baseline]`` for one build of ``graph``; also its spec."""
    gc.collect()
    t0 = time.perf_counter()
    pipeline = build_pipeline(ws, graph, source_dir)
    t1 = time.perf_counter()
    spec = pipeline.spec
    t2 = time.perf_counter()
    dag = build_dag(spec, graph.name)
    t3 = time.perf_counter()
    gc.collect()
    t4 = time.perf_counter()
    baseline = build_baseline_dag(graph)
    t5 = time.perf_counter()
    expected = graph_edges(graph)
    if dag_edges(dag) != expected or dag_edges(baseline) != expected or len(dag.tasks) != graph.size:
        raise RuntimeError(f"{graph.name}: the translated DAG and the baseline do not have the graph's edges")
    return [t1 - t0, t2 - t1, t3 - t2, t5 - t4], spec


def time_build(ws: Workspace, graph: Graph, source_dir: Path, repeats: int) -> tuple[BuildTimes, PipelineSpec]:
    """Build ``graph`` ``repeats`` times both ways; return the median times and the pipeline's spec."""
    runs = []
    for _ in range(repeats):
        times, spec = _time_once(ws, graph, source_dir)
        runs.append(times)
    model, spec_s, dag, baseline = (statistics.median(column) for column in zip(*runs, strict=True))
    total = statistics.median(sum(run[:3]) for run in runs)
    return BuildTimes(model, spec_s, dag, total, baseline), spec


def hand_written_source(graph: Graph) -> str:
    """A DAG file a person could have written for ``graph``: a loop over an edge-list literal."""
    task_ids = tuple(f"s{i}" for i in range(graph.size))
    edges = tuple((f"s{u}", f"s{v}") for u, v in graph.edges)
    return f'''"""Hand-written baseline for {graph.name}: {graph.size} EmptyOperators, {len(edges)} edges."""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param

TASK_IDS = {task_ids!r}
EDGES = {edges!r}

with DAG({graph.name!r}, schedule=None, catchup=False,
         params={{"regenerate_outputs": Param(False, type="boolean")}}) as dag:
    tasks = {{task_id: EmptyOperator(task_id=task_id) for task_id in TASK_IDS}}
    for upstream, downstream in EDGES:
        tasks[upstream] >> tasks[downstream]
'''
