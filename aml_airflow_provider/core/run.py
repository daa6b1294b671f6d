"""``Run``: the run context a step script gets from ``Run.get_context()`` (SDK v1 path).

Inside a step, ``Run.get_context()`` describes the step run (ids from the environment the operator
sets). Outside a pipeline it is an offline run. In this release metrics are written to the step's
log (one ``metric`` line each), so they are visible in the Airflow task log.
"""

from __future__ import annotations

import json
import os
from typing import Any


class Run:
    """A run as seen from the script.

    :param run_id: the run's id
    :param experiment_name: the experiment (DAG) name
    :param parent_id: the pipeline run's id
    """

    def __init__(self, run_id: str, experiment_name: str | None = None, parent_id: str | None = None) -> None:
        self.id = run_id
        self.experiment_name = experiment_name
        self.parent_id = parent_id
        self._tags: dict[str, str] = {}

    @staticmethod
    def get_context(allow_offline: bool = True) -> Run:
        """The current step run, or an offline run when the script runs outside a pipeline."""
        run_id = os.environ.get("AZUREML_RUN_ID")
        if run_id:
            return Run(run_id, os.environ.get("AZUREML_EXPERIMENT_NAME"), os.environ.get("AZUREML_ROOT_RUN_ID"))
        if not allow_offline:
            raise RuntimeError("Not running inside a pipeline step and allow_offline=False.")
        return Run("OfflineRun", None, None)

    @property
    def is_offline(self) -> bool:
        return self.id == "OfflineRun"

    def _emit(self, kind: str, name: str, value: Any) -> None:
        print(f"[aml {kind}] {name} = {json.dumps(value, default=str)}", flush=True)

    def log(self, name: str, value: Any, description: str = "", step: int | None = None) -> None:
        self._emit("metric", name, value)

    def log_list(self, name: str, value: list[Any], description: str = "") -> None:
        self._emit("metric", name, list(value))

    def log_row(self, name: str, description: str | None = None, **kwargs: Any) -> None:
        self._emit("metric", name, kwargs)

    def log_table(self, name: str, value: dict[str, list[Any]], description: str = "") -> None:
        self._emit("metric", name, value)

    def tag(self, key: str, value: str | None = None) -> None:
        self._tags[key] = "" if value is None else str(value)
        self._emit("tag", key, self._tags[key])

    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.tag(key, value)

    def get_tags(self) -> dict[str, str]:
        return dict(self._tags)

    def __repr__(self) -> str:
        return f"Run(id={self.id!r})"
