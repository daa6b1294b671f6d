"""DatabricksStepOperator against a loopback Databricks REST server (Jobs 2.2, DBFS 2.0).

The operator talks through the Databricks provider's own hook and trigger; the server, written from the
public API reference, records what it was sent and plays run-state sequences. Data lives on Azurite.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from airflow.sdk.exceptions import TaskDeferred

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.core.compute import ComputeTarget, DatabricksCompute
from aml_airflow_provider.core.databricks import JarLibrary, PyPiLibrary
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.exceptions import DatastoreError, StepRunError
from aml_airflow_provider.operators.databricks_step import DatabricksStepOperator
from aml_airflow_provider.operators.registry import operator_for
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData, PipelineParameter
from aml_airflow_provider.pipeline.steps import DatabricksStep
from aml_airflow_provider.uris import DatastoreUri
from tests.support.databricks_server import DatabricksServer
from tests.support.task_instance import Background, FakeTI

WASBS = "wasbs://test-blobstore@devstoreaccount1.blob.core.windows.net"


class StateStore(dict):
    """Airflow's task state store as an operator sees it: kept across tries of one task."""

    def set(self, key, value):
        self[key] = value


@pytest.fixture
def dbx(workspace, connections):
    with DatabricksServer() as server:
        config = DatabricksCompute.attach_configuration("rg", "dbx-ws", server.token, host=server.url)
        ComputeTarget.attach(workspace, "dbx", config)
        connections()
        yield server
    ComputeTarget(workspace, "dbx").detach()


@pytest.fixture
def raw(workspace, blob_datastore, tmp_path):
    (tmp_path / "rows.csv").write_text("a,b\n1,2\n")
    blob_datastore.upload_files([str(tmp_path / "rows.csv")], target_path="dbx-in", overwrite=True, show_progress=False)
    return DataReference(blob_datastore, path_on_datastore="dbx-in/rows.csv", data_reference_name="raw")


def build(workspace, step, **kwargs) -> DatabricksStepOperator:
    spec = Pipeline(workspace, [step]).spec
    (s,) = spec.steps
    kwargs.setdefault("polling_period_seconds", 0.01)
    return operator_for(s.kind).from_step_spec(s, spec, **kwargs)


def context(ti, **params):
    return {"ti": ti, "params": params}


def read_record(workspace, ti) -> tuple[str, dict]:
    record = DatastoreUri.parse(ti.pushed["aml.step_run"]["record"])
    root = Path(Datastore(workspace, record.datastore).root) / record.path
    log = (root / "files" / "azureml-logs" / "70_driver_log.txt").read_text()
    return log, json.loads((root / "details.json").read_text())


def test_notebook_run_payload_outputs_and_exit_value(workspace, dbx, raw, blob_datastore):
    rate = PipelineParameter("rate", default_value=0.5)
    epochs = PipelineParameter("epochs", default_value=3)
    model = PipelineData("model", datastore=blob_datastore)
    step = DatabricksStep(
        name="train",
        inputs=[raw],
        outputs=[model],
        notebook_path="/Users/me/train",
        notebook_params={"rate": rate, "epochs": epochs, "label": "a b=c"},
        min_workers=1,
        max_workers=3,
        spark_conf={"spark.speculation": "true"},
        pypi_libraries=[PyPiLibrary("scikit-learn")],
        timeout_seconds=900,
        compute_target="dbx",
        allow_reuse=False,
    )
    dbx.script_next_run(
        [("PENDING", None, "Waiting"), ("RUNNING", None, "In run"), ("TERMINATED", "SUCCESS", "")],
        notebook_result="accuracy=0.93",
    )
    ti = FakeTI()
    build(workspace, step).execute(context(ti, rate=0.25, epochs=10))

    (payload,) = dbx.submitted()
    (task,) = payload["tasks"]
    assert payload["run_name"] == "train" and payload["timeout_seconds"] == 900
    assert payload["idempotency_token"].startswith("aml-") and len(payload["idempotency_token"]) <= 64
    out_path = "azureml/dag1/manual__2026-01-01T00_00_00_00_00/train/model"
    assert task["notebook_task"] == {
        "notebook_path": "/Users/me/train",
        "base_parameters": {
            "rate": "0.25",  # the run's values, not the defaults; typed parameters (v1 took strings only)
            "epochs": "10",
            "label": "a b=c",
            "raw": f"{WASBS}/dbx-in/rows.csv",
            "model": f"{WASBS}/{out_path}",
        },
    }
    assert task["new_cluster"] == {
        "spark_version": "10.4.x-scala2.12",
        "node_type_id": "Standard_D3_v2",
        "autoscale": {"min_workers": 1, "max_workers": 3},
        "spark_env_vars": {"PYSPARK_PYTHON": "/databricks/python3/bin/python3"},
        "spark_conf": {"spark.speculation": "true"},
    }
    assert task["libraries"] == [{"pypi": {"package": "scikit-learn"}}]
    assert "existing_cluster_id" not in task

    run_id = ti.pushed["run_id"]
    assert ti.pushed["run_page_url"] == f"{dbx.url}/?o=0#job/{dbx.run(run_id)['job_id']}/run/{run_id}"
    assert ti.pushed["notebook_result"] == "accuracy=0.93"
    assert ti.pushed["model"] == f"azureml://datastores/blobstore/paths/{out_path}"
    log, details = read_record(workspace, ti)
    assert details["status"] == "Finished" and details["remote_job"] == {"id": run_id, "url": ti.pushed["run_page_url"]}
    assert ti.pushed["run_page_url"] in log and "accuracy=0.93" in log
    # The token went in the Authorization header only.
    assert all(r.header("Authorization") == f"Bearer {dbx.token}" for r in dbx.requests)
    assert dbx.token not in json.dumps(ti.pushed) + log + json.dumps(dbx.submitted())


def test_python_script_name_uploads_the_snapshot_once_and_passes_v1_arguments(workspace, dbx, raw, script_dir):
    (script_dir / "train.py").write_text("import sys\nprint(sys.argv)\n")
    (script_dir / "helpers.py").write_text("X = 1\n")
    (script_dir / "big.bin").write_bytes(bytes(range(256)) * 5000)  # over DBFS's 1 MB per call
    flag = PipelineParameter("flag", default_value=False)
    step = DatabricksStep(
        name="script",
        inputs=[raw],
        python_script_name="train.py",
        source_directory=script_dir,
        python_script_params=["--flag", flag, "--n", 5],
        existing_cluster_id="0101-abc",
        permit_cluster_restart=True,
        compute_target="dbx",
        allow_reuse=False,
    )
    op = build(workspace, step)
    ti = FakeTI()
    op.execute(context(ti, flag=True))
    (payload,) = dbx.submitted()
    (task,) = payload["tasks"]
    assert task["existing_cluster_id"] == "0101-abc" and "new_cluster" not in task
    python_file = task["spark_python_task"]["python_file"]
    folder = python_file.rsplit("/", 1)[0]
    assert python_file.startswith("dbfs:/aml/snapshots/") and python_file.endswith("/train.py")
    assert task["spark_python_task"]["parameters"] == [
        "--flag", "True", "--n", "5",
        "-raw", f"{WASBS}/dbx-in/rows.csv",
        "--AZUREML_RUN_ID", f"{ti.run_id}.t1", "--AZUREML_ARM_WORKSPACE_NAME", "test-ws",
        "--AZUREML_SCRIPT_DIRECTORY_NAME", folder,
    ]  # fmt: skip
    dbfs_folder = folder.removeprefix("dbfs:")
    assert dbx.dbfs[f"{dbfs_folder}/train.py"] == (script_dir / "train.py").read_bytes()
    assert dbx.dbfs[f"{dbfs_folder}/big.bin"] == (script_dir / "big.bin").read_bytes()
    assert dbx.requests_to("dbfs/add-block"), "a file over 1 MB goes in blocks"

    puts = len(dbx.requests_to("dbfs/put")) + len(dbx.requests_to("dbfs/create"))
    op2 = build(workspace, step)
    op2.execute(context(FakeTI(try_number=2), flag=True))
    assert len(dbx.submitted()) == 2
    assert len(dbx.requests_to("dbfs/put")) + len(dbx.requests_to("dbfs/create")) == puts, "same snapshot: no upload"


def test_jar_task(workspace, dbx):
    step = DatabricksStep(
        name="jar",
        main_class_name="com.example.Main",
        jar_params=["--days", PipelineParameter("days", default_value=7)],
        jar_libraries=[JarLibrary("dbfs:/libs/app.jar")],
        num_workers=2,
        node_type="Standard_DS3_v2",
        compute_target="dbx",
    )
    ti = FakeTI()
    build(workspace, step).execute(context(ti, days=30))
    (task,) = dbx.submitted()[0]["tasks"]
    assert task["spark_jar_task"]["main_class_name"] == "com.example.Main"
    assert task["spark_jar_task"]["parameters"][:2] == ["--days", "30"]
    assert task["libraries"] == [{"jar": "dbfs:/libs/app.jar"}]
    assert task["new_cluster"]["num_workers"] == 2 and task["new_cluster"]["node_type_id"] == "Standard_DS3_v2"


@pytest.mark.parametrize(
    ("final", "expected"),
    [
        (("TERMINATED", "FAILED", "Task failed with error"), r"TERMINATED/FAILED: Task failed with error\. ValueError"),
        (("TERMINATED", "TIMEDOUT", "Run timed out"), r"TERMINATED/TIMEDOUT: Run timed out"),
        (("INTERNAL_ERROR", "FAILED", "Cluster could not start"), r"INTERNAL_ERROR/FAILED: Cluster could not start"),
    ],
)
def test_failed_run_fails_the_task_with_the_state_message(workspace, dbx, blob_datastore, final, expected):
    out = PipelineData("out", datastore=blob_datastore)
    step = DatabricksStep(
        name="bad", outputs=[out], python_script_path="dbfs:/s.py", num_workers=1, compute_target="dbx"
    )
    dbx.script_next_run([("RUNNING", None, "In run"), final], error="ValueError: bad input")
    ti = FakeTI()
    with pytest.raises(StepRunError, match=expected) as info:
        build(workspace, step).execute(context(ti))
    assert "See http://127.0.0.1" in str(info.value)
    assert "out" not in ti.pushed, "a failed run hands on no output"
    log, details = read_record(workspace, ti)
    assert details["status"] == "Failed" and final[2] in log
    assert dbx.token not in str(info.value) + log


def test_deferrable_wait_through_the_providers_trigger(workspace, dbx, blob_datastore):
    from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

    out = PipelineData("out", datastore=blob_datastore)
    step = DatabricksStep(
        name="nb", outputs=[out], notebook_path="/nb", existing_cluster_id="c-1", compute_target="dbx"
    )
    dbx.script_next_run(
        [("PENDING", None, "Waiting"), ("RUNNING", None, "In run"), ("TERMINATED", "SUCCESS", "")],
        notebook_result="42",
    )
    ti = FakeTI()
    op = build(workspace, step, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context(ti))
    trigger = deferred.value.trigger
    assert isinstance(trigger, DatabricksExecutionTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow.providers.databricks.triggers.databricks.DatabricksExecutionTrigger"
    assert (kwargs["run_id"], kwargs["databricks_conn_id"]) == (ti.pushed["run_id"], "aml_compute.test-ws.dbx")
    assert deferred.value.method_name == "execute_complete"
    json.dumps(deferred.value.kwargs)  # what Airflow stores between the two halves must be JSON
    assert dbx.token not in json.dumps(deferred.value.kwargs) + json.dumps(kwargs)
    assert "out" not in ti.pushed

    async def first_event():
        async for event in DatabricksExecutionTrigger(**kwargs).run():
            return event

    event = asyncio.run(first_event())
    assert json.loads(event.payload["run_state"])["result_state"] == "SUCCESS"
    # Killing the task while it is deferred cancels the run through the trigger (the provider's on_kill).
    asyncio.run(DatabricksExecutionTrigger(**kwargs).on_kill())
    assert dbx.cancelled == [ti.pushed["run_id"]]
    # The second half runs in a new operator object, as after a triggerer hand-back.
    resumed = build(workspace, step, deferrable=True)
    resumed.execute_complete(context(ti), event=event.payload, **deferred.value.kwargs)
    assert ti.pushed["out"].startswith("azureml://datastores/blobstore/paths/azureml/dag1/")
    assert ti.pushed["notebook_result"] == "42"
    assert ti.pushed["aml.step_run"]["outputs_url"]
    assert len(dbx.submitted()) == 1


def test_deferred_failure_carries_the_task_errors(workspace, dbx):
    from airflow.providers.databricks.triggers.databricks import DatabricksExecutionTrigger

    step = DatabricksStep(name="nb", python_script_path="dbfs:/s.py", existing_cluster_id="c-1", compute_target="dbx")
    dbx.script_next_run([("TERMINATED", "FAILED", "Workload failed")], error="ZeroDivisionError: division by zero")
    ti = FakeTI()
    with pytest.raises(TaskDeferred) as deferred:
        build(workspace, step, deferrable=True).execute(context(ti))

    async def first_event():
        async for event in DatabricksExecutionTrigger(**deferred.value.trigger.serialize()[1]).run():
            return event

    event = asyncio.run(first_event())
    with pytest.raises(StepRunError, match=r"Workload failed.*ZeroDivisionError"):
        build(workspace, step).execute_complete(context(ti), event=event.payload, **deferred.value.kwargs)


def test_on_kill_cancels_the_run(workspace, dbx):
    step = DatabricksStep(name="long", notebook_path="/nb", existing_cluster_id="c-1", compute_target="dbx")
    dbx.script_next_run([("PENDING", None, "Waiting"), ("RUNNING", None, "In run")])  # runs until cancelled
    op = build(workspace, step)
    running = Background(op, context(FakeTI()), lambda: op.job_id is not None)
    op.on_kill()
    error = running.result()
    assert dbx.cancelled == [op.job_id]
    assert isinstance(error, StepRunError) and "CANCELED" in str(error)


def test_retry_after_a_worker_crash_reattaches_instead_of_submitting_again(workspace, dbx):
    from airflow.providers.databricks.hooks.databricks import DatabricksHook

    step = DatabricksStep(
        name="nb", notebook_path="/nb", existing_cluster_id="c-1", compute_target="dbx", allow_reuse=False
    )
    # Try 1 submitted this run, recorded it in the task state store, and its worker died.
    dbx.script_next_run([("RUNNING", None, "In run"), ("RUNNING", None, "In run"), ("TERMINATED", "SUCCESS", "")])
    first = DatabricksHook("aml_compute.test-ws.dbx").submit_run(
        {
            "run_name": "nb",
            "tasks": [{"task_key": "t1", "existing_cluster_id": "c-1", "notebook_task": {"notebook_path": "/nb"}}],
        }
    )
    store = StateStore(databricks_run_id=first)
    ti = FakeTI(try_number=2)
    build(workspace, step).execute({**context(ti), "task_state_store": store})
    assert len(dbx.submitted()) == 1, "no second job"
    assert ti.pushed["run_id"] == first

    # A retry after the earlier run has *failed* submits a new one (and records it).
    dbx.script_next_run([("TERMINATED", "FAILED", "boom")])
    failed = DatabricksHook("aml_compute.test-ws.dbx").submit_run(dict(dbx.submitted()[0], idempotency_token="x"))
    store = StateStore(databricks_run_id=failed)
    ti = FakeTI(try_number=3)
    build(workspace, step).execute({**context(ti), "task_state_store": store})
    assert len(dbx.submitted()) == 3 and store["databricks_run_id"] == ti.pushed["run_id"] != failed


def test_reused_step_submits_nothing(workspace, dbx, raw, blob_datastore):
    out = PipelineData("out", datastore=blob_datastore)
    step = DatabricksStep(
        name="reuse", inputs=[raw], outputs=[out], notebook_path="/nb", existing_cluster_id="c-1", compute_target="dbx"
    )
    first, second = FakeTI(), FakeTI()
    second.run_id = "manual__2026-01-02T00:00:00+00:00"
    build(workspace, step).execute(context(first))
    build(workspace, step).execute(context(second))
    assert len(dbx.submitted()) == 1
    assert second.pushed["out"] == first.pushed["out"]
    assert second.pushed["aml.step_run"]["reused_from"] == f"{first.run_id}.t1"


def test_local_folder_datastore_cannot_feed_a_databricks_cluster(workspace, dbx):
    out = PipelineData("out", datastore=workspace.get_default_datastore())
    step = DatabricksStep(name="nb", outputs=[out], notebook_path="/nb", existing_cluster_id="c", compute_target="dbx")
    with pytest.raises(DatastoreError, match=r"datastore 'workspaceblobstore'.*cannot be reached from a Databricks"):
        build(workspace, step).execute(context(FakeTI()))
    assert dbx.submitted() == []


def test_templated_fields_render_for_hand_written_dags(workspace):
    from airflow.sdk import DAG

    with DAG("handwritten_dbx", schedule=None):
        op = DatabricksStepOperator(
            task_id="nb",
            workspace="test-ws",
            task_kind="notebook",
            task_target="/Users/{{ params.user }}/nb",
            notebook_params={"day": "{{ params.day }}"},
            cluster={"existing_cluster_id": "{{ params.cluster }}"},
            databricks_conn_id="databricks_default",
        )
    op.render_template_fields({"params": {"user": "ana", "day": "2026-11-25", "cluster": "c-9"}})
    assert op.task_target == "/Users/ana/nb"
    assert op.notebook_params == {"day": "2026-11-25"} and op.cluster == {"existing_cluster_id": "c-9"}
    with pytest.raises(ValueError, match="task_kind"):
        DatabricksStepOperator(task_id="x", workspace="w", task_kind="sql", task_target="q")


# -- local Spark ------------------------------------------------------------------------------------
def test_local_spark_failure_shows_the_python_traceback(workspace, connections, script_dir):
    (script_dir / "job.py").write_text(
        "import sys\nprint(sys.argv[1:])\nraise ValueError('bad rows in ' + sys.argv[2])\n"
    )
    step = DatabricksStep(
        name="local fail",
        python_script_name="job.py",
        source_directory=script_dir,
        python_script_params=["--table", "sales"],
        num_workers=1,
        compute_target="local",
    )
    ti = FakeTI()
    with pytest.raises(StepRunError, match=r"(?s)failed on local Spark \(exit code 1\).*ValueError: bad rows in sales"):
        build(workspace, step).execute(context(ti))
    log, details = read_record(workspace, ti)
    assert details["status"] == "Failed" and "ValueError: bad rows in sales" in log
    assert "run_id" not in ti.pushed  # nothing was submitted anywhere


def test_local_spark_refuses_what_it_cannot_run(workspace, connections, script_dir):
    jar = DatabricksStep(
        name="jar",
        main_class_name="a.B",
        jar_libraries=[JarLibrary("dbfs:/a.jar")],
        num_workers=1,
        compute_target="local",
    )
    with pytest.raises(StepRunError, match="a JAR step needs a Databricks workspace"):
        build(workspace, jar).execute(context(FakeTI()))
    (script_dir / "plain.py").write_text("print('not a notebook')\n")
    notebook = DatabricksStep(name="nb", notebook_path=str(script_dir / "plain.py"), num_workers=1)
    with pytest.raises(StepRunError, match="not a notebook in Databricks source format"):
        build(workspace, notebook).execute(context(FakeTI()))
    missing = DatabricksStep(name="nb2", notebook_path="/Users/me/etl", num_workers=1)
    with pytest.raises(StepRunError, match=r"'/Users/me/etl' is not a file on this worker"):
        build(workspace, missing).execute(context(FakeTI()))
