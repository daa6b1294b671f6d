"""Run tracking: what a step run leaves behind besides its outputs (metrics, tags, files, its log).

The script side (``Run.get_context()``) appends to files in a local folder named by
``AZUREML_RUN_TRACKING_DIR``; when the step ends (well or not) the operator publishes that folder,
the script's ``./outputs`` (v1's artifact folder) and the driver log to the step run's folder on the
pipeline's default datastore::

    azureml/<experiment>/<run>/<task>/step-run/
        metrics.jsonl  tags.json  details.json
        files/azureml-logs/70_driver_log.txt  files/outputs/...  files/<uploaded name>
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Environment variable with the script's local tracking folder.
TRACKING_DIR_VARIABLE = "AZUREML_RUN_TRACKING_DIR"
#: Name of the step-run folder next to a step's outputs ('-' cannot occur in an output name).
STEP_RUN_FOLDER = "step-run"
METRICS_FILE = "metrics.jsonl"
TAGS_FILE = "tags.json"
DETAILS_FILE = "details.json"
FILES_FOLDER = "files"
DRIVER_LOG = "azureml-logs/70_driver_log.txt"


def append_metric(folder: Path, record: Mapping[str, Any]) -> None:
    """Add one metric record (``name``, ``value``, ``type``, ``scope``, ...) to the folder's metrics file."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / METRICS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(dict(record), default=str) + "\n")


def read_metric_records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def aggregate(records: Iterable[Mapping[str, Any]], scope: str = "step") -> dict[str, Any]:
    """v1's ``get_metrics()`` shape: a value logged once stays a value, logged again becomes a list;
    ``log_list`` gives a list, ``log_row`` a table (column -> values), ``log_table`` the table itself."""
    metrics: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for rec in records:
        if rec.get("scope", "step") != scope:
            continue
        name, value, kind = rec["name"], rec["value"], rec.get("type", "scalar")
        if kind == "row":
            table = metrics.setdefault(name, {})
            for column, cell in value.items():
                table.setdefault(column, []).append(cell)
        elif kind in ("list", "table", "image"):
            metrics[name] = value
        else:
            counts[name] = counts.get(name, 0) + 1
            if counts[name] == 1:
                metrics[name] = value
            elif counts[name] == 2:
                metrics[name] = [metrics[name], value]
            else:
                metrics[name].append(value)
    return metrics


def collect(tracking_dir: Path, script_dir: Path, driver_log: Path, dest: Path) -> Path:
    """Gather what the step run leaves behind into ``dest`` (laid out as its step-run folder)."""
    files = dest / FILES_FOLDER
    files.mkdir(parents=True, exist_ok=True)
    for name in (METRICS_FILE, TAGS_FILE):
        if (tracking_dir / name).is_file():
            shutil.copy2(tracking_dir / name, dest / name)
    if (tracking_dir / FILES_FOLDER).is_dir():
        shutil.copytree(tracking_dir / FILES_FOLDER, files, dirs_exist_ok=True)
    if (script_dir / "outputs").is_dir():
        shutil.copytree(script_dir / "outputs", files / "outputs", dirs_exist_ok=True)
    if driver_log.is_file():
        (files / DRIVER_LOG).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(driver_log, files / DRIVER_LOG)
    return dest


def write_details(dest: Path, details: Mapping[str, Any]) -> None:
    (dest / DETAILS_FILE).write_text(json.dumps(dict(details), indent=1, sort_keys=True, default=str), encoding="utf-8")


class StepRunRecord:
    """Reads a published step-run folder; with no backend, a step run that left no record (it never started).

    :param backend: the datastore it is on
    :param folder: its path (``.../<task>/step-run``)
    """

    def __init__(self, backend: Any | None, folder: str) -> None:
        self.backend = backend
        self.folder = folder

    def read_text(self, name: str) -> str | None:
        """A metadata file (``metrics.jsonl``, ``tags.json``, ``details.json``) or a file under ``files/``."""
        import tempfile

        path = f"{self.folder}/{name}"
        if self.backend is None or not self.backend.list_files(path):
            return None
        with tempfile.TemporaryDirectory(prefix="aml-step-run-") as tmp:
            local = Path(tmp) / "f"
            self.backend.download_many([(path, local)], overwrite=True)
            return local.read_text(encoding="utf-8", errors="replace")

    def metric_records(self) -> list[dict[str, Any]]:
        return read_metric_records(self.read_text(METRICS_FILE) or "")

    def details(self) -> dict[str, Any]:
        text = self.read_text(DETAILS_FILE)
        return json.loads(text) if text else {}

    def file_names(self) -> list[str]:
        """Files kept with the run, relative to ``files/`` (``azureml-logs/70_driver_log.txt``, ``outputs/...``)."""
        if self.backend is None:
            return []
        prefix = f"{self.folder}/{FILES_FOLDER}"
        return [f.path[len(prefix) + 1 :] for f in self.backend.list_files(prefix)]

    def download(self, name: str, target: Path) -> None:
        path = f"{self.folder}/{FILES_FOLDER}/{name}"
        if self.backend is None or not self.backend.list_files(path):
            raise FileNotFoundError(f"The step run kept no file named {name!r}.")
        self.backend.download_many([(path, target)], overwrite=True)
