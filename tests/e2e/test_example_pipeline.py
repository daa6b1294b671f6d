"""The example pipeline (the seed article's), run the way a user runs it: ``python dags/compare_models/pipeline.py``.

Each run starts from an empty AIRFLOW_HOME, so it also proves that a fresh deployment needs no
set-up, and checks the content of the outputs, not only the statuses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PIPELINE = REPO / "dags" / "compare_models" / "pipeline.py"

pytestmark = pytest.mark.e2e


def run_example(airflow_home: Path, *args: str, storage_account: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(airflow_home)
    if storage_account:
        env["AML_STORAGE_ACCOUNT"] = storage_account
    return subprocess.run(
        [sys.executable, str(PIPELINE), *args], env=env, capture_output=True, text=True, cwd=airflow_home.parent
    )


def check_comparison(result: dict, pipeline_arg: int) -> None:
    assert result["pipeline_arg"] == pipeline_arg
    assert len(result["first_predictions"]) == pipeline_arg
    assert set(result["test_accuracy"]) == {"logistic", "random_forest"}
    assert result["winner"] == max(result["test_accuracy"], key=result["test_accuracy"].get)
    # Real models trained on real data: both classify digits far better than chance.
    assert min(result["test_accuracy"].values()) > 0.85
    matches = sum(p == y for p, y in zip(result["first_predictions"], result["first_labels"], strict=True))
    assert matches >= pipeline_arg - 1


def test_example_pipeline_on_the_embedded_default(tmp_path):
    home = tmp_path / "airflow"
    proc = run_example(home, "4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for step in ("prep", "train_logistic", "train_random_forest", "compare"):
        assert f"StepRun '{step}': Finished" in proc.stdout
    assert "Winner:" in proc.stdout

    root = home / "aml_datastores" / "aml-demo" / "workspaceblobstore" / "azureml" / "Compare_Models_Exp"
    (run_folder,) = list(root.iterdir())
    check_comparison(json.loads((run_folder / "compare" / "comparison" / "comparison.json").read_text()), 4)
    prepared = run_folder / "prep" / "processed_data1"
    assert sorted(p.name for p in prepared.iterdir()) == ["test.csv", "train.csv"]
    for model, folder in (("logistic", "train_logistic/model_a"), ("random_forest", "train_random_forest/model_b")):
        metrics = json.loads((run_folder / folder / "metrics.json").read_text())
        assert metrics["model"] == model and metrics["train_rows"] > 1000
        assert (run_folder / folder / "model.pkl").stat().st_size > 0
    # A generated DAG file and its spec now sit in the deployment's dags folder.
    assert (home / "dags" / "aml_pipelines" / "Compare_Models_Exp.py").is_file()
    assert (home / "airflow.cfg").is_file() and (home / ".azureml" / "config.json").is_file()
    assert "AccountKey" not in (home / ".azureml" / "config.json").read_text()


def test_example_pipeline_with_data_on_azure_blob_storage(tmp_path, azurite):
    from azure.storage.blob import ContainerClient

    home = tmp_path / "airflow"
    proc = run_example(home, "6", storage_account=azurite.connection_string)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    container = ContainerClient.from_connection_string(azurite.connection_string, "azureml-blobstore-aml-demo")
    names = [b.name for b in container.list_blobs(name_starts_with="azureml/Compare_Models_Exp/")]
    (comparison,) = [n for n in names if n.endswith("compare/comparison/comparison.json")]
    check_comparison(json.loads(container.download_blob(comparison).readall()), 6)
    assert any(n.endswith("train_random_forest/model_b/model.pkl") for n in names)
    assert "digits/digits.csv" in [b.name for b in container.list_blobs(name_starts_with="digits/")]
    # Nothing on the local disk stands in for the blob store.
    assert not (home / "aml_datastores" / "aml-demo" / "workspaceblobstore").exists()
    # The credential lives in the Airflow connection only.
    for path in [*home.rglob("*.json"), *home.rglob("*.py"), *home.rglob("*.cfg")]:
        assert azurite.account_key not in path.read_text(errors="replace"), path
