"""A deployment reached over HTTP: Airflow's REST API v2 plus this package's plugin routes (``/aml``).

Connections, DAG runs, task instances and XCom come from ``/api/v2``; pipeline documents are written
and read through the plugin, which keeps them in the server's dags folder. Airflow's API never
returns a connection's password: a client that needs a datastore's credential (to upload data or
snapshots, or download outputs) reads it from its own ``AIRFLOW_CONN_<ID>`` variable.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

from aml_airflow_provider._secrets import redact
from aml_airflow_provider.core.authentication import AirflowAuthentication
from aml_airflow_provider.dagfile import DagDocument
from aml_airflow_provider.deployment.base import ConnectionRecord, PoolRecord, RunRecord, TaskRecord
from aml_airflow_provider.exceptions import WorkspaceException

#: How long to wait for the DAG processor to load a document just written.
PARSE_TIMEOUT = 180.0
_REDACTED = "***"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def wait_until(check: Callable[[], Any], what: str, timeout: float, interval: float = 1.0) -> Any:
    """Poll ``check()`` until it returns something truthy; raise naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise WorkspaceException(f"Gave up waiting for {what} after {timeout:.0f} s.")
        time.sleep(interval)


def _local_secret(conn_id: str) -> str | None:
    """The password of ``conn_id`` from this client's own ``AIRFLOW_CONN_<ID>`` variable, if set."""
    raw = os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    if not raw:
        return None
    from airflow.sdk import Connection

    conn = (
        Connection.from_json(raw, conn_id=conn_id)
        if raw.lstrip().startswith("{")
        else Connection.from_uri(raw, conn_id=conn_id)
    )
    return conn.password


class RemoteDeployment:
    """An Airflow deployment at ``base_url``.

    :param base_url: the API server, e.g. ``https://airflow.example.com``
    :param auth: who calls it
    """

    airflow_home = None

    def __init__(self, base_url: str, auth: AirflowAuthentication | None = None) -> None:
        import requests

        self.base_url = base_url.rstrip("/")
        self.auth = auth or AirflowAuthentication()
        self.auth.airflow_url = self.auth.airflow_url or self.base_url
        self._http = requests.Session()
        self._written: dict[str, str] = {}

    # -- HTTP -------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, ok404: bool = False, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        response = self._http.request(method, url, headers=self.auth.get_authentication_header(), timeout=60, **kwargs)
        if response.status_code == 401:  # an expired token: log in again, once
            headers = {"Authorization": f"Bearer {self.auth.get_token(refresh=True)}"}
            response = self._http.request(method, url, headers=headers, timeout=60, **kwargs)
        if ok404 and response.status_code == 404:
            return None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            # A 422 echoes the request body back, connection password included.
            sent = kwargs.get("json")
            secrets = [sent.get("password")] if isinstance(sent, dict) else []
            detail = redact(detail, secrets)
            raise WorkspaceException(f"Airflow answered {response.status_code} to {method} {path}: {detail}")
        return response.json() if response.content else None

    # -- connections ------------------------------------------------------------------------------
    def _record(self, body: Mapping[str, Any]) -> ConnectionRecord:
        extra = body.get("extra") or "{}"
        password = body.get("password")
        if password in (None, "", _REDACTED):
            password = _local_secret(body["connection_id"])
        return ConnectionRecord(
            conn_id=body["connection_id"],
            conn_type=body["conn_type"],
            extra=json.loads(extra) if isinstance(extra, str) else dict(extra),
            password=password,
            description=body.get("description"),
            host=body.get("host"),
            port=body.get("port"),
            schema=body.get("schema"),
        )

    def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        body = self._call("GET", f"/api/v2/connections/{quote(conn_id, safe='')}", ok404=True)
        return self._record(body) if body else None

    def put_connection(self, record: ConnectionRecord) -> None:
        body = {
            "connection_id": record.conn_id,
            "conn_type": record.conn_type,
            "description": record.description,
            "extra": record.extra_json,
            "password": record.password,
            "host": record.host,
            "port": record.port,
            "schema": record.schema,
        }
        if self.get_connection(record.conn_id) is None:
            self._call("POST", "/api/v2/connections", json=body)
        else:
            self._call("PATCH", f"/api/v2/connections/{quote(record.conn_id, safe='')}", json=body)

    def delete_connection(self, conn_id: str) -> None:
        self._call("DELETE", f"/api/v2/connections/{quote(conn_id, safe='')}", ok404=True)

    def list_connections(self, prefix: str) -> list[ConnectionRecord]:
        body = self._call("GET", "/api/v2/connections", params={"connection_id_prefix_pattern": prefix, "limit": 1000})
        return [self._record(c) for c in body["connections"] if c["connection_id"].startswith(prefix)]

    # -- pools ------------------------------------------------------------------------------------
    def put_pool(self, name: str, slots: int, description: str) -> None:
        """Create or resize a pool (``/api/v2/pools``)."""
        body = {"slots": slots, "description": description, "include_deferred": False}
        if self.get_pool(name) is None:
            self._call("POST", "/api/v2/pools", json={"name": name, **body})
        else:  # the patch body names the pool "pool", the create body "name"
            self._call("PATCH", f"/api/v2/pools/{quote(name, safe='')}", json={"pool": name, **body})

    def get_pool(self, name: str) -> PoolRecord | None:
        body = self._call("GET", f"/api/v2/pools/{quote(name, safe='')}", ok404=True)
        if not body:
            return None
        return PoolRecord(
            name=body["name"],
            slots=body["slots"],
            description=body.get("description"),
            running=body.get("running_slots", 0),
            queued=body.get("queued_slots", 0),
            scheduled=body.get("scheduled_slots", 0),
            open=body.get("open_slots", 0),
        )

    def queue_workers(self, queue: str) -> list[str] | None:
        """Airflow's REST API does not say which workers serve a queue."""
        return None

    def delete_pool(self, name: str) -> None:
        self._call("DELETE", f"/api/v2/pools/{quote(name, safe='')}", ok404=True)

    # -- documents --------------------------------------------------------------------------------
    def write_dag(self, document: DagDocument, *, title: str) -> None:
        """Write the document and wait until Airflow has loaded this version of the DAG."""
        self._call("PUT", f"/aml/dags/{document.dag_id}", json={"document": document.to_dict(), "title": title})
        mark = document.version_mark

        def loaded() -> bool:
            details = self._call("GET", f"/api/v2/dags/{document.dag_id}/details", ok404=True) or {}
            return mark in (details.get("doc_md") or "")

        wait_until(loaded, f"Airflow to load DAG {document.dag_id}", PARSE_TIMEOUT)

    def read_dag(self, dag_id: str) -> DagDocument | None:
        body = self._call("GET", f"/aml/dags/{dag_id}", ok404=True)
        return DagDocument.from_dict(body) if body else None

    def list_dags(self, kind: str | None = None) -> list[DagDocument]:
        params = {"kind": kind} if kind else {}
        return [DagDocument.from_dict(d) for d in self._call("GET", "/aml/dags", params=params)]

    def write_endpoint(self, name: str, document: Mapping[str, Any]) -> None:
        self._call("PUT", f"/aml/endpoints/{name}", json=dict(document))

    def read_endpoint(self, name: str) -> dict[str, Any] | None:
        return self._call("GET", f"/aml/endpoints/{name}", ok404=True)

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self._call("GET", "/aml/endpoints")

    # -- runs -------------------------------------------------------------------------------------
    def set_paused(self, dag_id: str, paused: bool) -> None:
        self._call("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})

    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Start a run on the server (it runs there; follow it with ``wait_for_completion``)."""
        body = self._call("POST", f"/api/v2/dags/{dag_id}/dagRuns", json={"logical_date": None, "conf": dict(conf)})
        return body["dag_run_id"]

    def _run_record(self, body: Mapping[str, Any]) -> RunRecord:
        return RunRecord(
            dag_id=body["dag_id"],
            run_id=body["dag_run_id"],
            state=body.get("state"),
            conf=body.get("conf") or {},
            start_date=_when(body.get("start_date")),
            end_date=_when(body.get("end_date")),
            note=body.get("note"),
            run_after=_when(body.get("run_after")),
        )

    def dag_run(self, dag_id: str, run_id: str) -> RunRecord | None:
        body = self._call("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", ok404=True)
        return self._run_record(body) if body else None

    def list_dag_runs(self, dag_id: str) -> list[RunRecord]:
        body = self._call(
            "GET", f"/api/v2/dags/{dag_id}/dagRuns", ok404=True, params={"order_by": "-run_after", "limit": 100}
        )
        return [self._run_record(r) for r in (body or {}).get("dag_runs", [])]

    def find_dag_runs(self, run_id: str, dag_id_prefix: str | None = None) -> list[RunRecord]:
        found = [self.dag_run(d.dag_id, run_id) for d in self.list_dags()]
        return [r for r in found if r is not None and (not dag_id_prefix or r.dag_id.startswith(dag_id_prefix))]

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskRecord]:
        body = self._call(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances",
            ok404=True,
            params={"limit": 1000},
        )
        return [
            TaskRecord(
                t["task_id"],
                t.get("state"),
                t.get("try_number", 0),
                _when(t.get("start_date")),
                _when(t.get("end_date")),
            )
            for t in (body or {}).get("task_instances", [])
        ]

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        base = f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries"
        entries = (self._call("GET", base, ok404=True) or {}).get("xcom_entries", [])
        values = {}
        for entry in entries:
            body = self._call(
                "GET", f"{base}/{quote(entry['key'], safe='')}", ok404=True, params={"deserialize": "true"}
            )
            if body is not None:
                values[entry["key"]] = body.get("value")
        return values

    def cancel_run(self, dag_id: str, run_id: str, note: str) -> None:
        """Fail the run with ``note``: Airflow skips what has not started and stops what runs."""
        self._call("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}", json={"state": "failed"})
        self._call(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}",
            json={"note": note},
            params={"update_mask": "note"},
        )
