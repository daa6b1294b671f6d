"""The hook behind the ``aml_workspace`` connection type (a workspace's record in the deployment)."""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook

from aml_airflow_provider.deployment.base import workspace_conn_id


class AmlWorkspaceHook(BaseHook):
    """Read a workspace's settings (default datastore, informational Azure ids) from its connection.

    :param aml_workspace_conn_id: the connection ``aml_workspace.<name>``
    """

    conn_name_attr = "aml_workspace_conn_id"
    default_conn_name = workspace_conn_id("default")
    conn_type = "aml_workspace"
    hook_name = "AML workspace"

    def __init__(self, aml_workspace_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aml_workspace_conn_id = aml_workspace_conn_id

    def get_conn(self) -> dict[str, Any]:
        """The workspace's settings."""
        return dict(self.get_connection(self.aml_workspace_conn_id).extra_dejson)

    def test_connection(self) -> tuple[bool, str]:
        default = self.get_conn().get("default_datastore")
        if not default:
            return False, "The workspace record names no default datastore."
        return True, f"Workspace record found; default datastore '{default}'."
