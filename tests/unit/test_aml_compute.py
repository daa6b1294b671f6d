"""AmlCompute as an Airflow pool (slots = max_nodes) and a worker queue of the cluster's name.

Against the session's real Airflow metadata database (the embedded deployment).
"""

from __future__ import annotations

import uuid

import pytest
from airflow.models.pool import Pool

from aml_airflow_provider.core.compute import AmlCompute, ComputeTarget
from aml_airflow_provider.exceptions import ComputeTargetException
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.translate import PipelineToDag


@pytest.fixture
def cluster_name() -> str:
    return f"cpu-{uuid.uuid4().hex[:8]}"


def test_the_seed_articles_code_runs_as_written(workspace, cluster_name, capsys):
    ws, compute_name, vm_size = workspace, cluster_name, "STANDARD_NC6"
    # The seed article, verbatim but for the print of the status.
    if compute_name in ws.compute_targets:
        compute_target = ws.compute_targets[compute_name]
        if compute_target and type(compute_target) is AmlCompute:
            print("Found compute target: " + compute_name)
    else:
        print("Creating a new compute target...")
        provisioning_config = AmlCompute.provisioning_configuration(vm_size=vm_size, min_nodes=1, max_nodes=4)
        compute_target = ComputeTarget.create(ws, compute_name, provisioning_config)
        compute_target.wait_for_completion(show_output=True, min_node_count=None, timeout_in_minutes=20)
        status = compute_target.status.serialize()

    assert "Creating a new compute target..." in capsys.readouterr().out
    assert type(ws.compute_targets[compute_name]) is AmlCompute
    assert type(ComputeTarget(workspace=ws, name=compute_name)) is AmlCompute
    pool = Pool.get_pool(f"aml_compute.{ws.name}.{compute_name}")
    assert pool is not None and pool.slots == 4
    assert status["scaleSettings"]["maxNodeCount"] == 4 and status["scaleSettings"]["minNodeCount"] == 1
    assert (status["vmSize"], status["provisioningState"], status["queue"]) == (vm_size, "Succeeded", compute_name)
    assert status["nodeStateCounts"]["idleNodeCount"] == 4 and status["currentNodeCount"] == 0
    assert status["queueWorkers"] is None  # the embedded deployment's executor cannot tell


def test_update_resizes_the_pool_and_detach_removes_it(workspace, cluster_name):
    cluster = ComputeTarget.create(workspace, cluster_name, AmlCompute.provisioning_configuration(max_nodes=3))
    assert cluster.max_nodes == 3 and cluster.pool == f"aml_compute.{workspace.name}.{cluster_name}"

    cluster.update(max_nodes=1)
    assert Pool.get_pool(cluster.pool).slots == 1
    assert AmlCompute(workspace, cluster_name).max_nodes == 1 and cluster.max_nodes == 1

    cluster.delete()
    assert Pool.get_pool(cluster.pool) is None
    with pytest.raises(ComputeTargetException, match="ComputeTargetNotFound"):
        ComputeTarget(workspace, cluster_name)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_nodes": 0}, r"max_nodes must be a whole number >= 1, not 0"),
        ({"max_nodes": 2.5}, r"max_nodes must be a whole number >= 1, not 2\.5"),
        ({"min_nodes": 3, "max_nodes": 2}, r"min_nodes \(3\) is larger than max_nodes \(2\)"),
        ({"min_nodes": -1}, r"min_nodes must be a whole number >= 0"),
        ({"vm_priority": "spot"}, r"vm_priority must be 'dedicated' or 'lowpriority', not 'spot'"),
    ],
)
def test_bad_provisioning_settings_are_refused_when_given(kwargs, message):
    with pytest.raises(ComputeTargetException, match=message):
        AmlCompute.provisioning_configuration(**kwargs)


def test_the_admin_password_is_not_stored(workspace, cluster_name):
    config = AmlCompute.provisioning_configuration(max_nodes=2, admin_username="me", admin_user_password="s3cret-pw")
    ComputeTarget.create(workspace, cluster_name, config)
    record = workspace._deployment.get_connection(f"aml_compute.{workspace.name}.{cluster_name}")
    assert "s3cret-pw" not in repr(record) + record.extra_json and record.password is None


def test_steps_on_a_cluster_get_its_pool_and_queue(workspace, make_step, cluster_name):
    cluster = ComputeTarget.create(workspace, cluster_name, AmlCompute.provisioning_configuration(max_nodes=2))
    data = PipelineData("data")
    on_cluster = make_step("train", outputs=[data], compute_target=cluster)
    by_name = make_step("score", inputs=[data], compute_target=cluster_name)
    report = make_step("report", inputs=[data])
    pipeline = Pipeline(workspace, [on_cluster, by_name, report])

    dag = PipelineToDag(pipeline).to_dag("on_cluster")

    for task_id in ("train", "score"):
        task = dag.get_task(task_id)
        assert (task.pool, task.queue) == (cluster.pool, cluster_name)
    elsewhere = dag.get_task("report")
    assert elsewhere.pool == Pool.DEFAULT_POOL_NAME and elsewhere.queue != cluster_name
    # The spec carries the placement, so a DAG file needs no registry lookup.
    assert pipeline.spec.extra == {"compute_placement": {cluster_name: {"pool": cluster.pool, "queue": cluster_name}}}
