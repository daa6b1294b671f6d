"""DataTransferStep -> PythonScriptStep through Airflow: rows from PostgreSQL land on blob storage, and the
next step (which consumes the transfer's output, so it runs after it) reads them."""

from __future__ import annotations

import uuid

import pytest

from aml_airflow_provider.core import Datastore, Experiment
from aml_airflow_provider.data import DataReference
from aml_airflow_provider.data.sql_data_reference import SqlDataReference
from aml_airflow_provider.pipeline.core import Pipeline, PipelineData
from aml_airflow_provider.pipeline.steps import DataTransferStep, PythonScriptStep

pytestmark = pytest.mark.e2e

TOTAL = """
import csv, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
source = args["--sales"]
files = [os.path.join(source, f) for f in sorted(os.listdir(source))] if os.path.isdir(source) else [source]
total = sum(float(row["amount"]) for path in files for row in csv.DictReader(open(path)))
os.makedirs(args["--out"], exist_ok=True)
open(os.path.join(args["--out"], "total.txt"), "w").write(f"{total:.2f}")
"""


def test_sql_export_then_a_python_step(workspace, blob_datastore, script_dir, tmp_path):
    (script_dir / "total.py").write_text(TOTAL)
    pg = Datastore.register_azure_postgre_sql(
        workspace, "pg_e2e", "127.0.0.1", "test", "postgres", None, enforce_ssl=False, overwrite=True
    )
    table = f"sales_{uuid.uuid4().hex[:8]}"
    with pg._sql.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {table} (region text, amount numeric(10,2))")
        conn.exec_driver_sql(f"INSERT INTO {table} VALUES ('north', 10.25), ('south', 20.50), ('east', 1.25)")
    try:
        export = DataTransferStep(
            "export sales",
            source_data_reference=SqlDataReference(pg, "sales", sql_table=table),
            destination_data_reference=DataReference(
                blob_datastore, path_on_datastore=f"landing/{table}", data_reference_name="landing"
            ),
            compute_target="adf",
        )
        total = PipelineData("total", datastore=blob_datastore)
        summary = PythonScriptStep(
            "total.py",
            name="total",
            source_directory=script_dir,
            arguments=["--sales", export.get_output(), "--out", total],
            inputs=[export.get_output()],
            outputs=[total],
        )
        run = Experiment(workspace, "transfer_e2e").submit(Pipeline(workspace, [summary]))
        assert run.wait_for_completion(show_output=False) == "Finished"
        steps = {s.name: s for s in run.get_steps()}
        assert set(steps) == {"export sales", "total"}
        ref = steps["total"].get_output_data("total")
        ref.download(str(tmp_path / "out"), show_progress=False)
        assert (tmp_path / "out" / ref.path_on_datastore / "total.txt").read_text() == "32.00"
    finally:
        with pg._sql.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
