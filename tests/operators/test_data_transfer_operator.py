"""DataTransferOperator: copies between blob containers, local folders and SQL databases, for real.

Blob storage is Azurite; SQL is the machine's PostgreSQL and MariaDB. Each test builds the step with
the v1 model, translates it and runs the operator's ``execute()`` with a task-instance stand-in.
"""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest

from aml_airflow_provider.core import Datastore
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.operators.registry import operator_for
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import DataTransferStep
from aml_airflow_provider.uris import DatastoreUri
from tests.support.task_instance import FakeTI


@pytest.fixture(scope="module")
def second_blobstore(workspace, azurite):
    return Datastore.register_azure_blob_container(
        workspace,
        "blobstore2",
        "test-blobstore2",
        connection_string=azurite.connection_string,
        create_if_not_exists=True,
        overwrite=True,
    )


@pytest.fixture(scope="module")
def pg(workspace):
    return Datastore.register_azure_postgre_sql(
        workspace, "pgstore", "127.0.0.1", "test", "postgres", None, enforce_ssl=False, overwrite=True
    )


@pytest.fixture(scope="module")
def maria(workspace):
    return Datastore.register_azure_my_sql(workspace, "mariastore", "127.0.0.1", "test", "root", None, overwrite=True)


def run_step(workspace, step, ti=None, **params):
    spec = Pipeline(workspace, [step]).spec
    (s,) = spec.steps
    ti = ti or FakeTI()
    operator_for(s.kind).from_step_spec(s, spec).execute({"ti": ti, "params": params})
    return ti


def files_under(store: Datastore, prefix: str, tmp_path: Path) -> dict[str, bytes]:
    target = tmp_path / f"read-{uuid.uuid4().hex[:6]}"
    store.download(str(target), prefix=prefix, show_progress=False)
    return {
        p.relative_to(target / prefix).as_posix(): p.read_bytes() for p in (target / prefix).rglob("*") if p.is_file()
    }


def driver_log(workspace, ti) -> str:
    record = DatastoreUri.parse(ti.pushed["aml.step_run"]["record"])
    root = Path(Datastore(workspace, record.datastore).root) / record.path
    return (root / "files" / "azureml-logs" / "70_driver_log.txt").read_text()


def test_blob_folder_to_another_container_server_side(
    workspace, connections, blob_datastore, second_blobstore, tmp_path
):
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "a.csv").write_text("a\n1\n")
    (src / "nested" / "b.bin").write_bytes(bytes(range(256)) * 1000)
    blob_datastore.upload(str(src), target_path="xfer/src", overwrite=True, show_progress=False)
    connections()
    step = DataTransferStep(
        "copy",
        source_data_reference=DataReference(blob_datastore, path_on_datastore="xfer/src", data_reference_name="src"),
        destination_data_reference=DataReference(
            second_blobstore, path_on_datastore="copies/one", data_reference_name="dst"
        ),
        allow_reuse=False,
    )
    ti = run_step(workspace, step)
    assert files_under(second_blobstore, "copies/one", tmp_path) == {
        "a.csv": b"a\n1\n",
        "nested/b.bin": bytes(range(256)) * 1000,
    }
    assert ti.pushed["_data_transfer_output"] == "azureml://datastores/blobstore2/paths/copies/one"
    log = driver_log(workspace, ti)
    assert "Copied 2 files" in log and "server-side" in log


def test_overwrite_follows_the_destination_reference(workspace, connections, blob_datastore, tmp_path):
    local = workspace.get_default_datastore()
    (tmp_path / "v1.txt").write_text("new content")
    blob_datastore.upload_files(
        [str(tmp_path / "v1.txt")], target_path="xfer/file", overwrite=True, show_progress=False
    )
    root = Path(local.root) / "landing"
    root.mkdir(parents=True, exist_ok=True)
    (root / "v1.txt").write_text("old content")
    source = DataReference(blob_datastore, path_on_datastore="xfer/file/v1.txt", data_reference_name="src")
    keep = DataTransferStep("keep", source, DataReference(local, path_on_datastore="landing", overwrite=False))
    run_step(workspace, keep)
    assert (root / "v1.txt").read_text() == "old content"  # overwrite=False keeps what is there
    replace = DataTransferStep(
        "replace", source, DataReference(local, path_on_datastore="landing", overwrite=True), allow_reuse=False
    )
    ti = run_step(workspace, replace)
    assert (root / "v1.txt").read_text() == "new content"
    assert "Copying file" in driver_log(workspace, ti)


def test_sql_query_to_a_csv_file_on_blob(workspace, connections, blob_datastore, pg, tmp_path):
    table = f"orders_{uuid.uuid4().hex[:8]}"
    sql = pg._sql
    with sql.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (id int, name text, amount numeric(10,2))")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES (1, 'ann', 10.50), (2, 'bo, \"b\"', NULL), (3, 'cy', 7)")
    connections()
    try:
        step = DataTransferStep(
            "export",
            SqlDataReference(pg, "orders", sql_query=f"SELECT id, name, amount FROM {table} WHERE id < 3 ORDER BY id"),
            DataReference(
                blob_datastore, path_on_datastore=f"exports/{table}.csv", data_reference_name="out", overwrite=True
            ),
            destination_reference_type="file",
        )
        ti = run_step(workspace, step)
        data = files_under(blob_datastore, "exports", tmp_path)[f"{table}.csv"].decode()
        assert list(csv.reader(io.StringIO(data))) == [
            ["id", "name", "amount"],
            ["1", "ann", "10.50"],
            ["2", 'bo, "b"', ""],
        ]
        assert "Exported 2 rows" in driver_log(workspace, ti)
        # Unchanged rows: the copy is reused. A changed row: it runs again.
        again = run_step(workspace, step, FakeTI(try_number=1))
        assert "reused_from" in again.pushed["aml.step_run"]
        with sql.engine.begin() as conn:
            conn.exec_driver_sql(f"UPDATE {table} SET name = 'anne' WHERE id = 1")
        changed = FakeTI()
        changed.run_id = "manual__2026-01-05T00:00:00+00:00"
        run_step(workspace, step, changed)
        assert "reused_from" not in changed.pushed["aml.step_run"]
        assert "anne" in files_under(blob_datastore, "exports", tmp_path)[f"{table}.csv"].decode()
    finally:
        with sql.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def test_folder_of_csv_files_appended_to_a_table_once(workspace, connections, maria, tmp_path):
    local = workspace.get_default_datastore()
    folder = Path(local.root) / "to-load" / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    (folder / "part-1.csv").write_text("name,qty\nbolt,3\n")
    (folder / "part-2.csv").write_text("qty,name\n5,nut\n")
    table = f"stock_{uuid.uuid4().hex[:8]}"
    sql = maria._sql
    with sql.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (name varchar(20), qty int)")
    try:
        rel = folder.relative_to(local.root).as_posix()
        step = DataTransferStep(
            "load",
            DataReference(local, path_on_datastore=rel, data_reference_name="parts"),
            SqlDataReference(maria, "stock", sql_table=table),
            allow_reuse=False,
        )
        ti = run_step(workspace, step)
        run_step(workspace, step, ti)  # the same step run again (a retry): no duplicate rows
        with sql.engine.connect() as conn:
            rows = sorted(conn.exec_driver_sql(f"SELECT name, qty FROM {table}").fetchall())
        assert rows == [("bolt", 3), ("nut", 5)]
        assert "already appended" in driver_log(workspace, ti)
    finally:
        with sql.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")


def test_pipeline_data_destination_is_a_fresh_folder(workspace, connections, blob_datastore, tmp_path):
    (tmp_path / "f.txt").write_text("payload")
    blob_datastore.upload_files([str(tmp_path / "f.txt")], target_path="xfer/pd", overwrite=True, show_progress=False)
    out = PipelineData("copied", datastore=blob_datastore)
    step = DataTransferStep(
        "to pd", DataReference(blob_datastore, path_on_datastore="xfer/pd", data_reference_name="src"), out
    )
    ti = run_step(workspace, step)
    location = DatastoreUri.parse(ti.pushed["copied"])
    assert location.path.endswith("/copied")
    assert files_under(blob_datastore, location.path, tmp_path) == {"f.txt": b"payload"}
