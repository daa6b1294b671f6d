"""``Run.get_context()`` inside and outside a step: what it records and how metrics read back (v1 shapes)."""

from __future__ import annotations

import io
import json

import pytest

from aml_airflow_provider.core import Run
from aml_airflow_provider.runtime.tracking import TRACKING_DIR_VARIABLE, collect


@pytest.fixture
def step_run(tmp_path, monkeypatch) -> Run:
    monkeypatch.setenv("AZUREML_RUN_ID", "run1.train")
    monkeypatch.setenv("AZUREML_ROOT_RUN_ID", "run1")
    monkeypatch.setenv("AZUREML_EXPERIMENT_NAME", "exp")
    monkeypatch.setenv(TRACKING_DIR_VARIABLE, str(tmp_path / "tracking"))
    return Run.get_context()


def test_step_run_context_records_metrics_in_v1_shapes(step_run, tmp_path):
    assert (step_run.id, step_run.parent.id, step_run.is_offline) == ("run1.train", "run1", False)
    step_run.log("loss", 0.5)
    step_run.log("accuracy", 0.9)
    step_run.log("accuracy", 0.95)
    step_run.log_list("curve", [1, 2, 3])
    step_run.log_row("per_class", label="cat", f1=0.8)
    step_run.log_row("per_class", label="dog", f1=0.7)
    step_run.log_table("confusion", {"a": [1, 0], "b": [0, 1]})
    step_run.parent.log("best", "train")
    assert step_run.get_metrics() == {
        "loss": 0.5,
        "accuracy": [0.9, 0.95],
        "curve": [1, 2, 3],
        "per_class": {"label": ["cat", "dog"], "f1": [0.8, 0.7]},
        "confusion": {"a": [1, 0], "b": [0, 1]},
    }
    assert step_run.get_metrics("loss") == {"loss": 0.5} and step_run.get_metrics("nope") == {}
    assert step_run.parent.get_metrics() == {"best": "train"}


def test_tags_and_files_are_collected_with_outputs_and_the_driver_log(step_run, tmp_path):
    step_run.tag("stage", "dev")
    step_run.set_tags({"owner": "me", "stage": "prod"})
    assert step_run.get_tags() == {"stage": "prod", "owner": "me"}
    step_run.upload_file("models/m.bin", io.BytesIO(b"weights"))
    with pytest.raises(ValueError, match="relative path without"):
        step_run.upload_file("../escape.txt", io.BytesIO(b""))
    script_dir = tmp_path / "src"
    (script_dir / "outputs").mkdir(parents=True)
    (script_dir / "outputs" / "report.txt").write_text("r")
    driver_log = tmp_path / "driver.txt"
    driver_log.write_text("log line\n")
    record = collect(tmp_path / "tracking", script_dir, driver_log, tmp_path / "record")
    files = sorted(str(p.relative_to(record / "files")) for p in (record / "files").rglob("*") if p.is_file())
    assert files == ["azureml-logs/70_driver_log.txt", "models/m.bin", "outputs/report.txt"]
    assert json.loads((record / "tags.json").read_text()) == {"owner": "me", "stage": "prod"}
    assert not (record / "metrics.jsonl").exists()  # nothing was logged


def test_offline_run_prints_what_it_is_given(monkeypatch, capsys):
    monkeypatch.delenv("AZUREML_RUN_ID", raising=False)
    run = Run.get_context()
    assert run.is_offline and run.parent is None
    run.log("loss", 0.25)
    run.tag("k", "v")
    assert "[offline run] scalar loss = 0.25" in capsys.readouterr().out
    assert run.get_tags() == {"k": "v"} and run.get_metrics() == {}
    with pytest.raises(RuntimeError, match="allow_offline=False"):
        Run.get_context(allow_offline=False)
