"""Test-session setup: a private AIRFLOW_HOME (set before anything imports Airflow) and shared fixtures."""

from __future__ import annotations

import os
import tempfile

# Airflow reads AIRFLOW_HOME once, when it is first imported: give the whole session its own.
_SESSION_HOME = tempfile.mkdtemp(prefix="aml-test-airflow-")
os.environ["AIRFLOW_HOME"] = _SESSION_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "False")
# Test modules import Airflow before any workspace writes an airflow.cfg: give the session a key.
os.environ.setdefault("AIRFLOW__CORE__FERNET_KEY", "fuGRVdr8QIIF7kAzKWFa2AEB1BHfYrFdFswlQY5Y8z0=")

pytest_plugins = ["tests.support.azurite", "tests.support.airflow_server"]


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def workspace():
    """A workspace in the session's AIRFLOW_HOME, with the embedded default (local-folder datastores)."""
    from aml_airflow_provider.core import Workspace

    return Workspace.create("test-ws", exist_ok=True, show_output=False)


@pytest.fixture(scope="session")
def blob_datastore(workspace, azurite):
    """A blob datastore in ``workspace``, on a container of the session's Azurite."""
    from aml_airflow_provider.core import Datastore

    return Datastore.register_azure_blob_container(
        workspace,
        "blobstore",
        "test-blobstore",
        connection_string=azurite.connection_string,
        create_if_not_exists=True,
        overwrite=True,
    )


@pytest.fixture
def script_dir(tmp_path):
    """A fresh source directory; write scripts into it with ``(script_dir / "x.py").write_text(...)``."""
    folder = tmp_path / "src"
    folder.mkdir()
    return folder


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
