"""What the authoring model needs from an Airflow deployment, independent of how it is reached."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from aml_airflow_provider.dagfile import DagDocument

#: Prefixes of the Airflow connections that make up a workspace's registry.
WORKSPACE_CONN_PREFIX = "aml_workspace."
DATASTORE_CONN_PREFIX = "aml_datastore."
COMPUTE_CONN_PREFIX = "aml_compute."
WORKSPACE_CONN_TYPE = "aml_workspace"


def workspace_conn_id(workspace: str) -> str:
    return f"{WORKSPACE_CONN_PREFIX}{workspace}"


def datastore_conn_id(workspace: str, datastore: str) -> str:
    return f"{DATASTORE_CONN_PREFIX}{workspace}.{datastore}"


def compute_conn_id(workspace: str, compute: str) -> str:
    return f"{COMPUTE_CONN_PREFIX}{workspace}.{compute}"


def compute_pool_name(workspace: str, compute: str) -> str:
    """The Airflow pool that caps an ``AmlCompute``'s concurrent steps at its ``max_nodes``."""
    return f"{COMPUTE_CONN_PREFIX}{workspace}.{compute}"


@dataclass(frozen=True)
class ConnectionRecord:
    """An Airflow connection as the model sees it.

    :param conn_id: connection id
    :param conn_type: connection type
    :param extra: non-secret settings (the connection's ``extra`` JSON)
    :param password: the secret, if any (never printed: excluded from ``repr``)
    :param description: a line for the Connections page
    """

    conn_id: str
    conn_type: str
    extra: Mapping[str, Any] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)
    description: str | None = None
    #: Where a service connection points (a Databricks workspace, say): host name, port, URL scheme.
    host: str | None = None
    port: int | None = None
    schema: str | None = None

    @property
    def extra_json(self) -> str:
        return json.dumps(dict(self.extra), sort_keys=True)


@dataclass(frozen=True)
class PoolRecord:
    """An Airflow pool and what occupies it now.

    :param name: the pool's name
    :param slots: its size
    :param running: slots of running tasks
    :param queued: slots of queued tasks (sent to an executor, not started yet)
    :param scheduled: slots of tasks the scheduler has picked, not queued yet
    :param open: free slots
    """

    name: str
    slots: int
    description: str | None = None
    running: int = 0
    queued: int = 0
    scheduled: int = 0
    open: int = 0


@dataclass(frozen=True)
class TaskRecord:
    """One task instance of a DAG run."""

    task_id: str
    state: str | None
    try_number: int
    start_date: datetime | None
    end_date: datetime | None


@dataclass(frozen=True)
class RunRecord:
    """One DAG run."""

    dag_id: str
    run_id: str
    state: str | None
    conf: Mapping[str, Any]
    start_date: datetime | None
    end_date: datetime | None
    note: str | None = None
    run_after: datetime | None = None


class Deployment(Protocol):
    """An Airflow deployment: its connections, its dags folder, and its runs."""

    #: The deployment's AIRFLOW_HOME when it is reached in-process, else ``None``.
    airflow_home: Path | None

    def get_connection(self, conn_id: str) -> ConnectionRecord | None: ...

    def put_connection(self, record: ConnectionRecord) -> None: ...

    def delete_connection(self, conn_id: str) -> None: ...

    def list_connections(self, prefix: str) -> list[ConnectionRecord]: ...

    def put_pool(self, name: str, slots: int, description: str) -> None: ...

    def get_pool(self, name: str) -> PoolRecord | None: ...

    def delete_pool(self, name: str) -> None: ...

    def queue_workers(self, queue: str) -> list[str] | None: ...

    @property
    def base_url(self) -> str: ...

    def write_dag(self, document: DagDocument, *, title: str) -> None: ...

    def read_dag(self, dag_id: str) -> DagDocument | None: ...

    def list_dags(self, kind: str | None = None) -> list[DagDocument]: ...

    def write_endpoint(self, name: str, document: Mapping[str, Any]) -> None: ...

    def read_endpoint(self, name: str) -> dict[str, Any] | None: ...

    def list_endpoints(self) -> list[dict[str, Any]]: ...

    def set_paused(self, dag_id: str, paused: bool) -> None: ...

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str: ...

    def dag_run(self, dag_id: str, run_id: str) -> RunRecord | None: ...

    def list_dag_runs(self, dag_id: str) -> list[RunRecord]: ...

    def cancel_run(self, dag_id: str, run_id: str, note: str) -> None: ...

    def find_dag_runs(self, run_id: str, dag_id_prefix: str | None = None) -> list[RunRecord]: ...

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskRecord]: ...

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]: ...
