"""The embedded deployment: the Airflow at ``AIRFLOW_HOME``, used inside this process.

Connections and runs go through Airflow's own ORM on its metadata database (SQLite by default), and
a pipeline run is executed by ``DAG.test()``: the same scheduler loop, operators, execution API and
XCom as on a server, one task at a time, with no server to start.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aml_airflow_provider.dagfile import Catalog, DagDocument
from aml_airflow_provider.deployment.base import ConnectionRecord, PoolRecord, RunRecord, TaskRecord
from aml_airflow_provider.exceptions import WorkspaceException

log = logging.getLogger(__name__)

_STEP_LOGGERS = "airflow.task.operators.aml_airflow_provider=INFO aml_airflow_provider=INFO"

_CFG_HEADER = (
    "# Written by aml_airflow_provider the first time it used this AIRFLOW_HOME.\n"
    "# Everything not set here keeps Airflow's default.\n"
)


def default_airflow_home() -> Path:
    """``$AIRFLOW_HOME``, or Airflow's own default ``~/airflow``, as an absolute path."""
    return Path(os.path.expanduser(os.environ.get("AIRFLOW_HOME", "~/airflow"))).resolve()


def loaded_airflow_home() -> Path | None:
    """The AIRFLOW_HOME Airflow already read in this process, or ``None`` if Airflow is not imported."""
    configuration = sys.modules.get("airflow.configuration")
    if configuration is None:
        return None
    return Path(configuration.AIRFLOW_HOME).resolve()


def bind_airflow_home(airflow_home: Path) -> None:
    """Make this process use ``airflow_home``; impossible once Airflow has read another one."""
    airflow_home = airflow_home.resolve()
    loaded = loaded_airflow_home()
    if loaded is None:
        os.environ["AIRFLOW_HOME"] = str(airflow_home)
        # An embedded run prints Airflow's scheduler chatter to the user's console; keep the step
        # logs and hide the rest, unless the user chose a level.
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", _STEP_LOGGERS)
    elif loaded != airflow_home:
        raise WorkspaceException(
            f"This workspace belongs to the Airflow deployment at AIRFLOW_HOME={airflow_home}, but this "
            f"process already uses AIRFLOW_HOME={loaded}. Set AIRFLOW_HOME={airflow_home} before starting "
            "Python (or load the workspace before anything imports Airflow)."
        )


def _write_default_config(airflow_home: Path) -> None:
    """Give a fresh AIRFLOW_HOME a fernet key (so connection secrets are encrypted) and no examples."""
    from cryptography.fernet import Fernet

    cfg = Path(os.environ.get("AIRFLOW_CONFIG", airflow_home / "airflow.cfg"))
    if cfg.exists():
        return
    cfg.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"{_CFG_HEADER}\n[core]\nfernet_key = {Fernet.generate_key().decode()}\nload_examples = False\n\n"
        f"[api_auth]\njwt_secret = {secrets.token_urlsafe(32)}\n"
    )
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


class EmbeddedDeployment:
    """The Airflow deployment at ``airflow_home``, driven from this process.

    :param airflow_home: the deployment's ``AIRFLOW_HOME``
    """

    _lock = threading.Lock()

    def __init__(self, airflow_home: Path) -> None:
        self.airflow_home = Path(airflow_home).resolve()
        self._ready = False

    # -- set-up -----------------------------------------------------------------------------------
    def ensure_ready(self) -> None:
        """Bind AIRFLOW_HOME, write a minimal airflow.cfg and create the metadata DB if they are missing."""
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            bind_airflow_home(self.airflow_home)
            self.airflow_home.mkdir(parents=True, exist_ok=True)
            _write_default_config(self.airflow_home)
            self._ensure_fernet_key()
            self._ensure_db()
            self._ready = True

    @staticmethod
    def _ensure_fernet_key() -> None:
        from airflow.configuration import conf

        if conf.get("core", "fernet_key", fallback=""):
            return
        # Airflow was imported before the config file existed (or without one): use a key for this
        # process so secrets are still encrypted, and say how to make it permanent.
        from airflow.models.crypto import get_fernet
        from cryptography.fernet import Fernet

        conf.set("core", "fernet_key", Fernet.generate_key().decode())
        get_fernet.cache_clear()
        log.warning("No [core] fernet_key configured; using a per-process key. Set one in airflow.cfg.")

    @staticmethod
    def _ensure_db() -> None:
        from airflow import settings
        from airflow.utils import db
        from sqlalchemy import inspect

        if not inspect(settings.engine).has_table("dag_run"):
            log.info("Creating the Airflow metadata database at %s", settings.engine.url.render_as_string())
            db.initdb()

    @contextmanager
    def _session(self) -> Iterator[Any]:
        self.ensure_ready()
        from airflow.utils.session import create_session

        with create_session() as session:
            yield session

    @property
    def dags_folder(self) -> Path:
        self.ensure_ready()
        from airflow.configuration import conf

        return Path(conf.get("core", "dags_folder")).resolve()

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.dags_folder)

    @property
    def base_url(self) -> str:
        """Where this deployment's API server answers (``[api] base_url``) when one is started."""
        self.ensure_ready()
        from airflow.configuration import conf

        return (conf.get("api", "base_url", fallback="") or "http://localhost:8080").rstrip("/")

    # -- documents --------------------------------------------------------------------------------
    def write_dag(self, document: DagDocument, *, title: str) -> None:
        self.catalog.write_dag(document, title=title)

    def read_dag(self, dag_id: str) -> DagDocument | None:
        return self.catalog.read_dag(dag_id)

    def list_dags(self, kind: str | None = None) -> list[DagDocument]:
        return self.catalog.list_dags(kind)

    def write_endpoint(self, name: str, document: Mapping[str, Any]) -> None:
        self.catalog.write_endpoint(name, document)

    def read_endpoint(self, name: str) -> dict[str, Any] | None:
        return self.catalog.read_endpoint(name)

    def list_endpoints(self) -> list[dict[str, Any]]:
        return self.catalog.list_endpoints()

    def set_paused(self, dag_id: str, paused: bool) -> None:
        """Pause or unpause a DAG (a no-op until Airflow has seen it)."""
        self.ensure_ready()
        from airflow.models.dag import DagModel

        with self._session() as session:
            session.query(DagModel).filter(DagModel.dag_id == dag_id).update({DagModel.is_paused: paused})

    # -- connections ------------------------------------------------------------------------------
    @staticmethod
    def _record(conn: Any) -> ConnectionRecord:
        return ConnectionRecord(
            conn_id=conn.conn_id,
            conn_type=conn.conn_type,
            extra=conn.extra_dejson,
            password=conn.password,
            description=conn.description,
            host=conn.host,
            port=conn.port,
            schema=conn.schema,
        )

    def get_connection(self, conn_id: str) -> ConnectionRecord | None:
        self.ensure_ready()
        from airflow.models.connection import Connection

        with self._session() as session:
            conn = session.query(Connection).filter(Connection.conn_id == conn_id).one_or_none()
            return self._record(conn) if conn else None

    def put_connection(self, record: ConnectionRecord) -> None:
        """Create or replace a connection."""
        self.ensure_ready()
        from airflow.models.connection import Connection

        with self._session() as session:
            conn = session.query(Connection).filter(Connection.conn_id == record.conn_id).one_or_none()
            if conn is None:
                conn = Connection(conn_id=record.conn_id, conn_type=record.conn_type)
                session.add(conn)
            conn.conn_type = record.conn_type
            conn.description = record.description
            conn.password = record.password
            conn.extra = record.extra_json
            conn.host, conn.port, conn.schema = record.host, record.port, record.schema

    def delete_connection(self, conn_id: str) -> None:
        self.ensure_ready()
        from airflow.models.connection import Connection

        with self._session() as session:
            session.query(Connection).filter(Connection.conn_id == conn_id).delete()

    def list_connections(self, prefix: str) -> list[ConnectionRecord]:
        self.ensure_ready()
        from airflow.models.connection import Connection

        with self._session() as session:
            rows = (
                session.query(Connection)
                .filter(Connection.conn_id.startswith(prefix, autoescape=True))
                .order_by(Connection.conn_id)
                .all()
            )
            return [self._record(c) for c in rows]

    # -- pools ------------------------------------------------------------------------------------
    def put_pool(self, name: str, slots: int, description: str) -> None:
        """Create or resize a pool."""
        self.ensure_ready()
        from airflow.models.pool import Pool

        with self._session() as session:
            Pool.create_or_update_pool(name, slots, description, include_deferred=False, session=session)

    def get_pool(self, name: str) -> PoolRecord | None:
        self.ensure_ready()
        from airflow.models.pool import Pool

        with self._session() as session:
            pool = Pool.get_pool(name, session=session)
            if pool is None:
                return None
            stats = Pool.slots_stats(session=session).get(name) or {}
            return PoolRecord(
                name=name,
                slots=pool.slots,
                description=pool.description,
                running=int(stats.get("running", 0)),
                queued=int(stats.get("queued", 0)),
                scheduled=int(stats.get("scheduled", 0)),
                open=int(stats.get("open", 0)),
            )

    def queue_workers(self, queue: str) -> list[str] | None:
        """The Celery workers serving ``queue``; ``None`` when the executor cannot tell (not Celery)."""
        from airflow.configuration import conf

        if "CeleryExecutor" not in conf.get("core", "executor", fallback=""):
            return None
        from aml_airflow_provider.deployment.celery import workers_on_queue

        return workers_on_queue(queue, conf.get("celery", "broker_url"))

    def delete_pool(self, name: str) -> None:
        self.ensure_ready()
        from airflow.models.pool import Pool

        with self._session() as session:
            if Pool.get_pool(name, session=session) is not None:
                Pool.delete_pool(name, session=session)

    # -- runs -------------------------------------------------------------------------------------
    def trigger(self, dag_id: str, conf: Mapping[str, Any]) -> str:
        """Run a generated DAG to completion, in this process (``DAG.test``); return the run id."""
        from aml_airflow_provider.dagfile import load_dag_file

        dag = load_dag_file(self.catalog.dag_file(dag_id))
        dag_run = dag.test(run_conf=dict(conf))
        return dag_run.run_id

    def dag_run(self, dag_id: str, run_id: str) -> RunRecord | None:
        self.ensure_ready()
        from airflow.models.dagrun import DagRun

        with self._session() as session:
            dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one_or_none()
            return self._run_record(dr) if dr else None

    @staticmethod
    def _run_record(dr: Any) -> RunRecord:
        return RunRecord(
            dag_id=dr.dag_id,
            run_id=dr.run_id,
            state=str(dr.state) if dr.state else None,
            conf=dict(dr.conf or {}),
            start_date=dr.start_date,
            end_date=dr.end_date,
            note=dr.note,
            run_after=dr.run_after,
        )

    def cancel_run(self, dag_id: str, run_id: str, note: str) -> None:
        """End a run: it fails with ``note``; tasks not started are skipped, running ones stop themselves."""
        self.ensure_ready()
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.state import DagRunState, TaskInstanceState

        waiting = [
            None,
            TaskInstanceState.SCHEDULED,
            TaskInstanceState.QUEUED,
            TaskInstanceState.UP_FOR_RETRY,
            TaskInstanceState.UP_FOR_RESCHEDULE,
            TaskInstanceState.DEFERRED,
        ]
        with self._session() as session:
            dr = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
            if dr.state not in (DagRunState.RUNNING, DagRunState.QUEUED):
                return
            for ti in session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id):
                if ti.state in waiting:
                    ti.set_state(TaskInstanceState.SKIPPED, session=session)
            dr.set_state(DagRunState.FAILED)
            dr.note = note

    def list_dag_runs(self, dag_id: str) -> list[RunRecord]:
        """The DAG's runs, newest first."""
        self.ensure_ready()
        from airflow.models.dagrun import DagRun

        with self._session() as session:
            rows = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).all()
            return [self._run_record(dr) for dr in rows]

    def find_dag_runs(self, run_id: str, dag_id_prefix: str | None = None) -> list[RunRecord]:
        self.ensure_ready()
        from airflow.models.dagrun import DagRun

        with self._session() as session:
            query = session.query(DagRun).filter(DagRun.run_id == run_id)
            if dag_id_prefix:
                query = query.filter(DagRun.dag_id.startswith(dag_id_prefix, autoescape=True))
            return [self._run_record(dr) for dr in query.order_by(DagRun.id.desc()).all()]

    def task_instances(self, dag_id: str, run_id: str) -> list[TaskRecord]:
        self.ensure_ready()
        from airflow.models.taskinstance import TaskInstance

        with self._session() as session:
            rows = (
                session.query(TaskInstance)
                .filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
                .order_by(TaskInstance.start_date, TaskInstance.task_id)
                .all()
            )
            return [
                TaskRecord(
                    task_id=ti.task_id,
                    state=str(ti.state) if ti.state else None,
                    try_number=ti.try_number,
                    start_date=ti.start_date,
                    end_date=ti.end_date,
                )
                for ti in rows
            ]

    def xcoms(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        self.ensure_ready()
        from airflow.models.xcom import XComModel

        with self._session() as session:
            query = XComModel.get_many(run_id=run_id, dag_ids=dag_id, task_ids=task_id)
            return {row.key: XComModel.deserialize_value(row) for row in session.scalars(query)}


_DEPLOYMENTS: dict[Any, Any] = {}


def get_deployment(airflow_home: Path | str | None = None, airflow_url: str | None = None, auth: Any = None):
    """The (cached) deployment: the API server at ``airflow_url`` if given, else the one at
    ``airflow_home`` (default: this process's AIRFLOW_HOME), used in-process."""
    if airflow_url:
        from aml_airflow_provider.deployment.remote import RemoteDeployment

        key = (airflow_url.rstrip("/"), getattr(auth, "username", None))
        if key not in _DEPLOYMENTS or auth is not None:
            _DEPLOYMENTS[key] = RemoteDeployment(airflow_url, auth)
        return _DEPLOYMENTS[key]
    home = Path(airflow_home).expanduser().resolve() if airflow_home else default_airflow_home()
    if home not in _DEPLOYMENTS:
        _DEPLOYMENTS[home] = EmbeddedDeployment(home)
    return _DEPLOYMENTS[home]
