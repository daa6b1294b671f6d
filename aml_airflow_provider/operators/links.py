"""Extra links on step tasks in the Airflow UI: the step's outputs folder and its logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

# The operator pushes these when it runs; the links only read them back (no lookups in get_link).
XCOM_OUTPUTS_URL = "aml.outputs_url"
XCOM_LOGS_URL = "aml.logs_url"


class StepOutputsLink(BaseOperatorLink):
    """Where the step run's outputs are (the folder of this task in this run)."""

    name = "Step outputs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=XCOM_OUTPUTS_URL, ti_key=ti_key) or ""


class StepLogsLink(BaseOperatorLink):
    """Where the step run's driver log and files are kept."""

    name = "Step logs"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=XCOM_LOGS_URL, ti_key=ti_key) or ""
