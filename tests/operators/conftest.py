"""Fixtures of the operator tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def connections(workspace, monkeypatch):
    """Expose the workspace's datastore connections to the Task SDK, as a worker's secrets backend would."""
    from airflow.sdk import Connection

    def export() -> None:
        for record in workspace._deployment.list_connections("aml_"):
            conn = Connection(
                conn_id=record.conn_id,
                conn_type=record.conn_type,
                password=record.password,
                extra=record.extra_json,
                host=record.host,
                port=record.port,
                schema=record.schema,
            )
            monkeypatch.setenv(f"AIRFLOW_CONN_{record.conn_id.upper()}", conn.as_json())

    export()
    return export
