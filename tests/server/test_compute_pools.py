"""An AmlCompute's max_nodes caps its concurrent steps, on a real Airflow (scheduler and LocalExecutor)."""

from __future__ import annotations

import uuid
from datetime import datetime
from itertools import pairwise

import pytest

from aml_airflow_provider.core import Experiment
from aml_airflow_provider.core.compute import AmlCompute, ComputeTarget
from aml_airflow_provider.pipeline.core import Pipeline
from aml_airflow_provider.pipeline.steps import PythonScriptStep
from tests.server.conftest import wait_run

pytestmark = pytest.mark.server

#: Long enough that steps started together surely overlap, even on a loaded 2-core machine.
STEP_SECONDS = 4


def fan_out_on(ws, src, max_nodes: int) -> tuple[list[tuple[datetime, datetime]], AmlCompute]:
    """Run three independent steps on a new cluster of ``max_nodes``; return their (start, end) times."""
    (src / "busy.py").write_text(f"import time\ntime.sleep({STEP_SECONDS})\n")
    name = f"c{uuid.uuid4().hex[:8]}"
    cluster = ComputeTarget.create(ws, name, AmlCompute.provisioning_configuration(max_nodes=max_nodes))
    steps = [
        PythonScriptStep("busy.py", name=f"part_{i}", source_directory=src, compute_target=cluster, allow_reuse=False)
        for i in range(3)
    ]
    run = Experiment(ws, f"pool_{name}").submit(Pipeline(ws, steps))
    wait_run(ws, run.id, timeout=300)
    tasks = ws._deployment.task_instances(run.dag_id, run.id)
    assert sorted(t.task_id for t in tasks) == ["part_0", "part_1", "part_2"]
    return sorted((t.start_date, t.end_date) for t in tasks), cluster


def overlaps(intervals: list[tuple[datetime, datetime]]) -> bool:
    return any(later_start < earlier_end for (_, earlier_end), (later_start, _) in pairwise(intervals))


def test_a_cluster_of_one_node_runs_its_steps_one_at_a_time(remote):
    ws, _, src = remote
    intervals, cluster = fan_out_on(ws, src, max_nodes=1)
    assert not overlaps(intervals), intervals
    status = cluster.get_status().serialize()
    assert status["nodeStateCounts"]["idleNodeCount"] == 1 and status["currentNodeCount"] == 0


def test_a_cluster_of_three_nodes_runs_them_together(remote):
    ws, _, src = remote
    intervals, _ = fan_out_on(ws, src, max_nodes=3)
    assert overlaps(intervals), intervals  # the same pipeline, only max_nodes differs
