"""The package as Airflow and a deployment see it: provider registration, the repo's DAG folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def airflow_cli(home: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    airflow = Path(sys.executable).with_name("airflow")
    proc = subprocess.run([str(airflow), *args], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_airflow_lists_the_provider_and_its_connection_types(tmp_path):
    from aml_airflow_provider import __version__

    providers = json.loads(airflow_cli(tmp_path, "providers", "list", "-o", "json"))
    (ours,) = [p for p in providers if p["package_name"] == "aml-airflow-provider"]
    assert ours["version"] == __version__
    links = json.loads(airflow_cli(tmp_path, "providers", "links", "-o", "json"))
    assert {
        "aml_airflow_provider.operators.links.StepOutputsLink",
        "aml_airflow_provider.operators.links.StepLogsLink",
        "aml_airflow_provider.operators.databricks_step.DatabricksRunLink",
        "aml_airflow_provider.operators.adla_step.AdlaJobLink",
    } <= {link["extra_link_class_name"] for link in links}
    hooks = json.loads(airflow_cli(tmp_path, "providers", "hooks", "-o", "json"))
    types = {h["connection_type"]: h["class"] for h in hooks if h["package_name"] == "aml-airflow-provider"}
    assert types == {
        "aml_workspace": "aml_airflow_provider.hooks.workspace.AmlWorkspaceHook",
        "aml_blob_datastore": "aml_airflow_provider.hooks.datastore.AmlDatastoreHook",
        "aml_local_datastore": "aml_airflow_provider.hooks.datastore.AmlLocalDatastoreHook",
        "aml_compute": "aml_airflow_provider.hooks.compute.AmlComputeHook",
        "aml_adla": "aml_airflow_provider.hooks.adla.AdlaHook",
        "aml_sql_datastore": "aml_airflow_provider.hooks.datastore.AmlSqlDatastoreHook",
    }


def test_repo_dags_folder_parses_into_the_example_dag(workspace, monkeypatch):
    """dags/compare_models_dag.py builds the example with PipelineToDag; its step scripts are not imported."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.syspath_prepend(str(REPO / "dags"))
    before = set(sys.modules)
    bag = DagBag(dag_folder=str(REPO / "dags"), bundle_path=REPO / "dags")
    assert bag.import_errors == {}
    dag = bag.get_dag("compare_models")
    assert sorted(dag.task_ids) == ["compare", "prep", "train_logistic", "train_random_forest"]
    assert dag.get_task("compare").upstream_task_ids == {"prep", "train_logistic", "train_random_forest"}
    assert dag.params["pipeline_arg"] == 10
    imported = set(sys.modules) - before
    assert not {"prep", "train", "compare", "common", "sklearn"} & imported
    # The helper package and step scripts are excluded from DAG discovery by .airflowignore.
    assert set(bag.dag_ids) == {"compare_models"}
