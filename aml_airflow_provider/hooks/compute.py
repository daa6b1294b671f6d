"""The hook behind the ``aml_compute`` connection type: where a step on a named compute target runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import BaseHook

from aml_airflow_provider.core.compute import COMPUTE_TYPE_KEY
from aml_airflow_provider.deployment.base import compute_conn_id
from aml_airflow_provider.exceptions import ComputeTargetException


@dataclass(frozen=True)
class SparkTarget:
    """Where a Databricks step runs: local Spark on the worker, or the workspace behind a connection."""

    local: bool
    databricks_conn_id: str | None = None


class AmlComputeHook(BaseHook):
    """Read a compute target's registration (``aml_compute.<workspace>.<name>``).

    A Databricks compute attached with a token *is* an Airflow Databricks connection; one attached with
    ``connection_id=`` or ``local=True`` is an ``aml_compute`` connection that says so.

    :param aml_compute_conn_id: the registration's connection id
    """

    conn_name_attr = "aml_compute_conn_id"
    default_conn_name = compute_conn_id("default", "default")
    conn_type = "aml_compute"
    hook_name = "AML compute target"

    def __init__(self, aml_compute_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aml_compute_conn_id = aml_compute_conn_id

    @classmethod
    def for_compute(cls, workspace: str, name: str) -> AmlComputeHook:
        return cls(compute_conn_id(workspace, name))

    def get_conn(self) -> dict[str, Any]:
        """The registration's settings (never the token)."""
        return dict(self.get_connection(self.aml_compute_conn_id).extra_dejson)

    def spark_target(self) -> SparkTarget:
        """Where a DatabricksStep on this compute runs."""
        settings = self.get_conn()
        kind = settings.get(COMPUTE_TYPE_KEY)
        if kind != "Databricks":
            raise ComputeTargetException(
                f"Compute '{self.aml_compute_conn_id}' is a {kind or 'non-Databricks'} target; a DatabricksStep "
                "needs a DatabricksCompute (or compute_target='local' for Spark on the worker)."
            )
        if settings.get("local"):
            return SparkTarget(local=True)
        return SparkTarget(
            local=False, databricks_conn_id=settings.get("databricks_conn_id") or self.aml_compute_conn_id
        )

    def test_connection(self) -> tuple[bool, str]:
        target = self.spark_target()
        where = "local Spark on the worker" if target.local else f"Databricks connection '{target.databricks_conn_id}'"
        return True, f"Compute registration found: {where}."
