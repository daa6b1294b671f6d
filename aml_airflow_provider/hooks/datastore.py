"""Hooks that open a datastore from its Airflow connection."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.sdk import BaseHook

from aml_airflow_provider.deployment.base import DATASTORE_CONN_PREFIX, datastore_conn_id
from aml_airflow_provider.storage import DatastoreBackend, DatastoreConfig, open_backend, open_sql


class AmlDatastoreHook(BaseHook):
    """Open a datastore registered as the connection ``aml_datastore.<workspace>.<name>``.

    The connection is read on first use, not when the hook is built.

    :param aml_datastore_conn_id: the datastore's connection id
    """

    conn_name_attr = "aml_datastore_conn_id"
    default_conn_name = "aml_datastore.default.workspaceblobstore"
    conn_type = "aml_blob_datastore"
    hook_name = "AML blob datastore"

    def __init__(self, aml_datastore_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aml_datastore_conn_id = aml_datastore_conn_id

    @classmethod
    def for_datastore(cls, workspace: str, datastore: str) -> AmlDatastoreHook:
        """The hook of datastore ``datastore`` in workspace ``workspace``."""
        return cls(aml_datastore_conn_id=datastore_conn_id(workspace, datastore))

    @property
    def datastore_name(self) -> str:
        conn_id = self.aml_datastore_conn_id
        return conn_id.rsplit(".", 1)[-1] if conn_id.startswith(DATASTORE_CONN_PREFIX) else conn_id

    @cached_property
    def config(self) -> DatastoreConfig:
        conn = self.get_connection(self.aml_datastore_conn_id)
        return DatastoreConfig.from_connection(self.datastore_name, conn.conn_type, conn.extra, conn.password)

    @cached_property
    def backend(self) -> DatastoreBackend:
        return open_backend(self.config)

    @cached_property
    def sql(self) -> Any:
        """The SQL database of a SQL datastore (:class:`~aml_airflow_provider.storage.sql.SqlStore`)."""
        return open_sql(self.config)

    def get_conn(self) -> DatastoreBackend:
        return self.backend

    def test_connection(self) -> tuple[bool, str]:
        """Used by the Airflow UI's *Test* button."""
        try:
            self.backend.check_access()
        except Exception as exc:  # the UI shows the message; it is already free of secrets
            return False, str(exc)
        return True, f"Reached {self.backend.describe()}"


class AmlLocalDatastoreHook(AmlDatastoreHook):
    """A datastore that is a folder every worker can reach."""

    conn_type = "aml_local_datastore"
    hook_name = "AML local-folder datastore"


class AmlSqlDatastoreHook(AmlDatastoreHook):
    """A SQL database registered as a datastore (PostgreSQL, MySQL/MariaDB, SQL Server)."""

    conn_type = "aml_sql_datastore"
    hook_name = "AML SQL datastore"

    def test_connection(self) -> tuple[bool, str]:
        try:
            self.sql.check_access()
        except Exception as exc:  # the UI shows the message; the store redacts the password
            return False, str(exc)
        return True, f"Reached {self.sql.describe()}"
