"""A real Airflow deployment for the tests: API server, scheduler, DAG processor and triggerer on PostgreSQL.

It is started once per test session (``airflow_server`` fixture) from the test virtualenv, with a
fresh metadata database on the machine's PostgreSQL, the LocalExecutor, and Airflow's simple auth
manager with two users: ``admin`` (may do anything) and ``viewer`` (may read, not trigger).

``celery_airflow_server`` is the distributed variant: the CeleryExecutor with the machine's Redis
as broker, and two Celery workers (``w1``, ``w2``), each a separate process group with its own
working directory and temp folder, serving the queues in :data:`WORKER_QUEUES`. Each worker's tasks
see ``AML_TEST_WORKER`` (its name), so a step can say where it ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PASSWORDS = {"admin": "admin-pw-" + uuid.uuid4().hex[:8], "viewer": "viewer-pw-" + uuid.uuid4().hex[:8]}
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
START_TIMEOUT = 180
#: Queues the Celery workers serve: Airflow's default, and that of the tests' AmlCompute ``serial1``.
WORKER_QUEUES = ("default", "serial1")
REDIS_URL = "redis://127.0.0.1:6379"
#: The distributed deployment (docker-compose.yml runs the same topology; tests/test_compose.py checks it).
CELERY_WORKERS = ("w1", "w2")
#: The Celery result backend's SQLAlchemy scheme (``db+`` and the driver the metadata database uses).
RESULT_BACKEND_SCHEME = "db+postgresql+psycopg2"
#: One task at a time per worker: tasks queued together go to different workers.
WORKER_CONCURRENCY = 1
REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-c", sql],
        check=True,
        capture_output=True,
    )


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` still runs (zombies, which hold nothing, do not count)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it ended meanwhile
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@dataclass
class AirflowServer:
    """A running deployment.

    :param home: its AIRFLOW_HOME
    :param url: the API server's base URL
    """

    home: Path
    url: str
    database: str
    env: dict[str, str]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def dags_folder(self) -> Path:
        return self.home / "dags"

    def token(self, user: str = "admin") -> str:
        import requests

        response = requests.post(
            f"{self.url}/auth/token", json={"username": user, "password": PASSWORDS[user]}, timeout=30
        )
        response.raise_for_status()
        return response.json()["access_token"]

    def headers(self, user: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"}

    def log(self, component: str) -> str:
        return (self.home / f"{component}.log").read_text(errors="replace")

    def start(self) -> None:
        airflow = str(Path(sys.executable).with_name("airflow"))
        subprocess.run([airflow, "db", "migrate"], env=self.env, check=True, capture_output=True)
        for component in COMPONENTS:
            self._spawn(component, "w")
        self._wait_healthy()

    def _spawn(self, component: str, mode: str) -> None:
        airflow = str(Path(sys.executable).with_name("airflow"))
        out = open(self.home / f"{component}.log", mode)  # noqa: SIM115 - closed with the process
        self.processes[component] = subprocess.Popen(
            [airflow, component], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop_component(self, name: str, *, kill: bool = False, timeout: float = 60) -> None:
        """Stop one of :data:`COMPONENTS` and every process it started (its process group).

        :param kill: SIGKILL at once, as a lost machine (else SIGTERM, then SIGKILL after ``timeout``)
        """
        proc = self.processes[name]
        if proc.poll() is None:
            os.killpg(proc.pid, 9 if kill else 15)
        deadline = time.monotonic() + timeout
        # Until the whole group is gone: a child left behind (a log server) would hold its port.
        while _group_alive(proc.pid):
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
            proc.poll()
            time.sleep(0.2)
        proc.wait(timeout=30)

    def start_component(self, name: str) -> None:
        """Start one of :data:`COMPONENTS` (again) with the deployment's environment, appending to its log."""
        if name not in COMPONENTS:
            raise ValueError(f"{name!r} is not one of {COMPONENTS}")
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"airflow {name} is still running")
        self._spawn(name, "a")

    def _wait_healthy(self) -> None:
        import requests

        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for name, proc in self.processes.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
            try:
                health = requests.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
                if all(
                    health.get(c, {}).get("status") == "healthy"
                    for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                ):
                    return
            except (requests.RequestException, ValueError):
                pass
            time.sleep(1)
        raise RuntimeError("Airflow did not become healthy:\n" + self.log("api-server")[-3000:])

    def start_worker(self, name: str) -> None:
        """Start the Celery worker ``name`` (again): its own process group, working directory and TMPDIR."""
        airflow = str(Path(sys.executable).with_name("airflow"))
        workdir = self.home.parent / f"worker-{name}"
        (workdir / "tmp").mkdir(parents=True, exist_ok=True)
        env = {
            **self.env,
            "AML_TEST_WORKER": name,
            "TMPDIR": str(workdir / "tmp"),
            # Task instances record the worker's name as their host (both run on this machine).
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "tests.support.worker_name.hostname",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        }
        out = open(self.home / f"worker-{name}.log", "a")  # noqa: SIM115 - closed with the process
        argv = [airflow, "celery", "worker", "--queues", ",".join(WORKER_QUEUES), "--celery-hostname", f"{name}@%h"]
        # Logs are read from the shared AIRFLOW_HOME: no log server (two would want one port).
        argv += ["--concurrency", str(WORKER_CONCURRENCY), "--skip-serve-logs", "--without-gossip", "--without-mingle"]
        self.processes[f"worker-{name}"] = subprocess.Popen(
            argv,
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and every process it started (its running tasks too), as a lost machine."""
        proc = self.processes[f"worker-{name}"]
        os.killpg(proc.pid, 9)
        proc.wait(timeout=30)

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.processes.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        _psql(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def make_server(base: Path, executor: str = "LocalExecutor", **settings: str) -> AirflowServer:
    """A deployment (not started) in ``base`` with a new metadata database.

    :param executor: Airflow's executor
    :param settings: more environment variables (``AIRFLOW__...``)
    """
    from cryptography.fernet import Fernet

    home = base / "airflow-server"
    (home / "dags").mkdir(parents=True)
    port = _free_port()
    database = f"aml_it_{uuid.uuid4().hex[:10]}"
    _psql(f'CREATE DATABASE "{database}"')
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
            "AIRFLOW__CORE__EXECUTOR": executor,
            # Remote waits (Databricks, ADLA) go to the triggerer, polling the test's stand-in every second.
            "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE": "True",
            "AIRFLOW__AML__DATABRICKS_POLL_SECONDS": "1",
            "AIRFLOW__AML__ADLA_POLL_SECONDS": "1",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{url}/execution/",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": url,
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "3",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "3",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            **settings,
        }
    )
    return AirflowServer(home=home, url=url, database=database, env=env)


@pytest.fixture(scope="session")
def airflow_server(tmp_path_factory) -> Iterator[AirflowServer]:
    """A running Airflow on PostgreSQL (started once; ~30-60 s)."""
    server = make_server(tmp_path_factory.mktemp("server"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def celery_airflow_server(tmp_path_factory) -> Iterator[AirflowServer]:
    """Airflow with the CeleryExecutor (Redis broker) and the workers :data:`CELERY_WORKERS` (started once)."""
    import redis

    # A Redis database of its own (Redis keeps nothing on disk here; 0 is left to others).
    db = int(uuid.uuid4().int % 15) + 1
    redis.Redis.from_url(f"{REDIS_URL}/{db}").flushdb()
    server = make_server(
        tmp_path_factory.mktemp("celery"),
        "CeleryExecutor",
        AIRFLOW__CELERY__BROKER_URL=f"{REDIS_URL}/{db}",
        AIRFLOW__CELERY__WORKER_CONCURRENCY=str(WORKER_CONCURRENCY),
        # A task whose worker died is noticed within seconds, and tried once more.
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="15",
        AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="2",
        AIRFLOW__CORE__DEFAULT_TASK_RETRIES="1",
        AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY="1",
        AIRFLOW__CORE__PARALLELISM="8",
    )
    server.env["AIRFLOW__CELERY__RESULT_BACKEND"] = server.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace(
        "postgresql+psycopg2://", f"{RESULT_BACKEND_SCHEME}://"
    )
    try:
        server.start()
        for name in CELERY_WORKERS:
            server.start_worker(name)
        yield server
    finally:
        server.stop()
        redis.Redis.from_url(f"{REDIS_URL}/{db}").flushdb()
