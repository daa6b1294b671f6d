"""Datastore backends: a local folder and an Azure Blob container (and SQL databases, which only a
DataTransferStep reads or writes), opened from a :class:`DatastoreConfig`.

A datastore is registered as an Airflow connection (see :mod:`aml_airflow_provider.core.datastore`):
its settings live in the connection's ``extra`` and its credential, if any, in the password. This
module turns either side of that record into a backend.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aml_airflow_provider.storage.base import DatastoreBackend, RemoteFile, TransferStats

#: Airflow connection types of datastores, by backend kind.
CONN_TYPES = {"blob": "aml_blob_datastore", "local": "aml_local_datastore", "sql": "aml_sql_datastore"}
KIND_BY_CONN_TYPE = {v: k for k, v in CONN_TYPES.items()}

#: How a blob datastore authenticates; the secret (if any) is the connection password.
BLOB_CREDENTIALS = ("connection_string", "account_key", "sas_token", "default_azure_credential")


@dataclass(frozen=True)
class DatastoreConfig:
    """Everything needed to open a datastore.

    :param name: datastore name
    :param kind: ``blob``, ``local`` or ``sql``
    :param settings: non-secret settings. blob: ``container_name``, ``account_name``, ``account_url``,
        ``credential`` (one of :data:`BLOB_CREDENTIALS`); local: ``root`` (an absolute folder); sql:
        ``sql_kind`` (``postgresql``, ``mysql``, ``sqlserver``), ``server_name``, ``port``,
        ``database_name``, ``user_id``, ``ssl``
    :param secret: account key, SAS token, connection string or database password; never logged or put in a spec
    """

    name: str
    kind: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    secret: str | None = field(default=None, repr=False)

    @classmethod
    def from_connection(cls, name: str, conn_type: str, extra: str | Mapping[str, Any] | None, password: str | None):
        # Airflow turns '_' into '-' in connection URIs and back; accept either spelling.
        kind = KIND_BY_CONN_TYPE.get(conn_type.replace("-", "_"))
        if kind is None:
            raise ValueError(f"Connection for datastore '{name}' has type {conn_type!r}, not a datastore type.")
        settings = json.loads(extra) if isinstance(extra, str) and extra else dict(extra or {})
        return cls(name=name, kind=kind, settings=settings, secret=password or None)

    @property
    def conn_type(self) -> str:
        return CONN_TYPES[self.kind]


def open_backend(config: DatastoreConfig) -> DatastoreBackend:
    """Open the backend for ``config`` (Azure SDKs are imported only for blob datastores)."""
    if config.kind == "local":
        from aml_airflow_provider.storage.local import LocalBackend

        return LocalBackend(config.name, config.settings["root"])
    if config.kind == "blob":
        from aml_airflow_provider.storage.blob import BlobBackend

        return BlobBackend(config.name, config.settings, config.secret)
    if config.kind == "sql":
        from aml_airflow_provider.exceptions import DatastoreError

        raise DatastoreError(
            f"Datastore '{config.name}' is a SQL database: steps cannot read or write it as files. Copy between "
            "it and a blob or folder datastore with a DataTransferStep."
        )
    raise ValueError(f"Unknown datastore kind {config.kind!r} for datastore '{config.name}'.")


def open_sql(config: DatastoreConfig):
    """Open a SQL datastore (a :class:`~aml_airflow_provider.storage.sql.SqlStore`)."""
    from aml_airflow_provider.storage.sql import open_sql_store

    return open_sql_store(config.name, config.settings["sql_kind"], config.settings, config.secret)


__all__ = [
    "CONN_TYPES",
    "DatastoreBackend",
    "DatastoreConfig",
    "RemoteFile",
    "TransferStats",
    "open_backend",
    "open_sql",
]
