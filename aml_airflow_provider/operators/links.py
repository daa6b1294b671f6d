"""Extra links on step tasks in the Airflow UI: the step's outputs folder and its logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from aml_airflow_provider import xcom

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator


def _facts(operator: BaseOperator, ti_key: TaskInstanceKey) -> dict:
    # Airflow asks for the links in the worker that ran the task, as it ends: the operator still holds
    # what it pushed, which saves an API call per link per task.
    kept = getattr(operator, "step_run_facts", None)
    if kept is not None and kept[0] == (ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index):
        return kept[1]
    return XCom.get_value(key=xcom.STEP_RUN, ti_key=ti_key) or {}


class StepOutputsLink(BaseOperatorLink):
    """Where the step run's outputs are (the folder of this task in this run)."""

    name = "Step outputs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        # Pushed by the operator when it ran: no lookups here.
        return _facts(operator, ti_key).get(xcom.OUTPUTS_URL) or ""


class StepLogsLink(BaseOperatorLink):
    """Where the step run's driver log and files are kept."""

    name = "Step logs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return _facts(operator, ti_key).get(xcom.LOGS_URL) or ""
