"""``Run``: the run context a step script gets from ``Run.get_context()`` (SDK v1 path).

Inside a step, ``Run.get_context()`` is the step run: metrics, tags and files it records are kept
with the step run on the datastore when the step ends, and read back with ``StepRun.get_metrics()``,
``get_tags()``, ``get_file_names()`` and ``download_file()``. ``run.parent`` is the pipeline run.
Outside a pipeline it is an offline run that prints what it is given.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path
from typing import IO, Any

from aml_airflow_provider.runtime.tracking import (
    FILES_FOLDER,
    METRICS_FILE,
    TAGS_FILE,
    TRACKING_DIR_VARIABLE,
    aggregate,
    append_metric,
    read_metric_records,
)

OFFLINE_RUN_ID = "OfflineRun"


class Run:
    """A run as seen from the script.

    :param run_id: the run's id
    :param experiment_name: the experiment (DAG) name
    :param parent_id: the pipeline run's id (for a step run)
    """

    def __init__(
        self,
        run_id: str,
        experiment_name: str | None = None,
        parent_id: str | None = None,
        *,
        _tracking_dir: Path | None = None,
        _scope: str = "step",
    ) -> None:
        self.id = run_id
        self.experiment_name = experiment_name
        self.parent_id = parent_id
        self._dir = _tracking_dir
        self._scope = _scope
        self._offline_tags: dict[str, str] = {}

    @staticmethod
    def get_context(allow_offline: bool = True) -> Run:
        """The current step run, or an offline run when the script runs outside a pipeline."""
        run_id = os.environ.get("AZUREML_RUN_ID")
        if run_id:
            folder = os.environ.get(TRACKING_DIR_VARIABLE)
            return Run(
                run_id,
                os.environ.get("AZUREML_EXPERIMENT_NAME"),
                os.environ.get("AZUREML_ROOT_RUN_ID"),
                _tracking_dir=Path(folder) if folder else None,
            )
        if not allow_offline:
            raise RuntimeError("Not running inside a pipeline step and allow_offline=False.")
        return Run(OFFLINE_RUN_ID)

    @property
    def is_offline(self) -> bool:
        return self.id == OFFLINE_RUN_ID

    @property
    def parent(self) -> Run | None:
        """The pipeline run; what is logged on it is kept as pipeline-level metrics."""
        if self.parent_id is None or self._scope != "step":
            return None
        return Run(self.parent_id, self.experiment_name, None, _tracking_dir=self._dir, _scope="pipeline")

    # -- metrics ----------------------------------------------------------------------------------
    def _record(self, kind: str, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("A metric needs a non-empty name.")
        if self._dir is None:
            print(f"[offline run] {kind} {name} = {json.dumps(value, default=str)}", flush=True)
            return
        record = {"name": name, "value": value, "type": kind, "scope": self._scope, "description": description}
        if step is not None:
            record["step"] = step
        append_metric(self._dir, record)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        """Log a value; logging a name again makes it a list of values (as v1)."""
        self._record("scalar", name, value, description, step)

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        self._record("list", name, list(value), description)

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        """Add a row to the table ``name`` (columns are the keyword arguments)."""
        self._record("row", name, kwargs, description or "")

    def log_table(self, name: str, value: dict[str, list[Any]], description: str = "") -> None:
        self._record("table", name, {k: list(v) for k, v in value.items()}, description)

    def log_image(self, name: str, path: str | None = None, plot: Any = None, description: str = "") -> None:
        """Keep an image file (or a matplotlib figure) as a file of the run and record it as a metric."""
        target = f"images/{name}.png"
        if plot is not None:
            buffer = io.BytesIO()
            plot.savefig(buffer, format="png")
            buffer.seek(0)
            self.upload_file(target, buffer)
        elif path is not None:
            self.upload_file(target, path)
        else:
            raise ValueError("log_image needs a path or a plot.")
        self._record("image", name, target, description)

    def get_metrics(self, name: str | None = None) -> dict[str, Any]:
        """What this run has logged so far."""
        if self._dir is None or not (self._dir / METRICS_FILE).is_file():
            return {}
        metrics = aggregate(read_metric_records((self._dir / METRICS_FILE).read_text(encoding="utf-8")), self._scope)
        if name is None:
            return metrics
        return {name: metrics[name]} if name in metrics else {}

    # -- tags and files ---------------------------------------------------------------------------
    def tag(self, key: str, value: str | None = None) -> None:
        tags = self.get_tags()
        tags[key] = "" if value is None else str(value)
        self._write_tags(tags)

    def set_tags(self, tags: dict[str, str]) -> None:
        merged = self.get_tags()
        merged.update({k: "" if v is None else str(v) for k, v in tags.items()})
        self._write_tags(merged)

    def get_tags(self) -> dict[str, str]:
        if self._dir is None or self._scope != "step" or not (self._dir / TAGS_FILE).is_file():
            return dict(self._offline_tags)
        return json.loads((self._dir / TAGS_FILE).read_text(encoding="utf-8"))

    def _write_tags(self, tags: dict[str, str]) -> None:
        if self._dir is None or self._scope != "step":
            self._offline_tags = tags
            print(f"[offline run] tags = {json.dumps(tags)}", flush=True)
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        (self._dir / TAGS_FILE).write_text(json.dumps(tags, sort_keys=True), encoding="utf-8")

    def upload_file(self, name: str, path_or_stream: str | os.PathLike[str] | IO[bytes]) -> None:
        """Keep a file with the run under ``name`` (a relative path such as ``outputs/model.pkl``)."""
        parts = Path(name).parts
        if not parts or Path(name).is_absolute() or ".." in parts:
            raise ValueError(f"File name {name!r} must be a relative path without '..'.")
        if self._dir is None:
            print(f"[offline run] file {name}", flush=True)
            return
        target = self._dir / FILES_FOLDER / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(path_or_stream, "read"):
            with open(target, "wb") as fh:
                shutil.copyfileobj(path_or_stream, fh)  # type: ignore[arg-type]
        else:
            shutil.copy2(path_or_stream, target)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r})"
