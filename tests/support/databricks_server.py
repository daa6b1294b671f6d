"""A loopback stand-in for the Databricks REST API, for contract tests.

Written from the public Databricks REST reference: Jobs API 2.1/2.2 (``runs/submit``, ``runs/get``,
``runs/get-output``, ``runs/cancel``), DBFS API 2.0 and Workspace API 2.0 (``mkdirs``, ``import``).
It answers what ``airflow.providers.databricks.hooks.databricks.DatabricksHook`` sends, from both its
sync client (``requests``: GET arguments in the query string) and its async one (``aiohttp``, used by
``DatabricksExecutionTrigger``: GET arguments as a JSON body), records every request, and plays
scripted run-state sequences::

    with DatabricksServer() as server:
        server.script_next_run([("RUNNING", None, "In run"), ("TERMINATED", "FAILED", "boom")], error="boom")
        ...  # connection: host=server.host, port=server.port, schema="http", password=server.token
        assert server.submitted()[0]["tasks"][0]["task_key"] == "train"

Runs: ``runs/submit`` creates one run and one task run per submitted task, with ids taken from one
counter starting at :data:`FIRST_RUN_ID` (run 1001, its task run 1002, the next run 1003, ...). Each
``runs/get`` of a run, or of one of its task runs, returns the run's current scripted state and moves
it on after ``polls_per_state`` such reads; the last state sticks, and a terminal one is final. Task
runs always share their run's state. ``runs/get-output`` and ``runs/cancel`` never advance a script;
``runs/get-output`` reports the notebook result, logs and error only once the run is terminal, as
Databricks does.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from tests.support.loopback import LoopbackServer, QuietHTTPServer, RecordedRequest, parse_query, read_body

DEFAULT_TOKEN = "dapi-contract-token"
FIRST_RUN_ID = 1001
FIRST_JOB_ID = 90001
FIRST_DBFS_HANDLE = 7001
#: DBFS ``put`` contents and ``add-block`` data are limited to 1 MB once decoded.
MAX_BLOCK_BYTES = 1024 * 1024
#: Workspace ``import`` content is limited to 10 MB once decoded.
MAX_IMPORT_BYTES = 10 * 1024 * 1024
MAX_IDEMPOTENCY_TOKEN_LENGTH = 64

LIFE_CYCLE_STATES = frozenset(
    {
        "PENDING",
        "QUEUED",
        "RUNNING",
        "TERMINATING",
        "TERMINATED",
        "SKIPPED",
        "INTERNAL_ERROR",
        "BLOCKED",
        "WAITING_FOR_RETRY",
    }
)
TERMINAL_LIFE_CYCLE_STATES = frozenset({"TERMINATED", "SKIPPED", "INTERNAL_ERROR"})
RESULT_STATES = frozenset(
    {
        "SUCCESS",
        "FAILED",
        "TIMEDOUT",
        "CANCELED",
        "MAXIMUM_CONCURRENT_RUNS_REACHED",
        "EXCLUDED",
        "SUCCESS_WITH_FAILURES",
        "UPSTREAM_FAILED",
        "UPSTREAM_CANCELED",
        "DISABLED",
    }
)
#: What a run does when nothing was queued with :meth:`DatabricksServer.script_next_run`.
DEFAULT_RUN_SCRIPT: tuple[tuple[str, str | None, str], ...] = (
    ("PENDING", None, "Waiting for cluster"),
    ("RUNNING", None, "In run"),
    ("TERMINATED", "SUCCESS", ""),
)
CANCELLED_STATE: tuple[str, str | None, str] = ("TERMINATED", "CANCELED", "Run cancelled.")

#: Task kinds this stand-in runs; a task must set exactly one of them.
TASK_KINDS = ("notebook_task", "spark_python_task", "spark_jar_task")
#: Other task kinds of the Jobs API: recognised only to reject them clearly.
OTHER_TASK_KINDS = (
    "python_wheel_task",
    "spark_submit_task",
    "pipeline_task",
    "sql_task",
    "dbt_task",
    "run_job_task",
    "condition_task",
    "for_each_task",
    "clean_rooms_notebook_task",
    "dashboard_task",
    "power_bi_task",
)
CLUSTER_KINDS = ("existing_cluster_id", "new_cluster")
_TASK_KEY_RE = re.compile(r"^[\w\-]{1,100}$")

WORKSPACE_FORMATS = frozenset({"SOURCE", "HTML", "JUPYTER", "DBC", "R_MARKDOWN", "AUTO", "RAW"})
WORKSPACE_LANGUAGES = frozenset({"SCALA", "PYTHON", "SQL", "R"})
#: Folders every workspace has; ``/Users/<name>`` home folders are taken to exist as well.
_WORKSPACE_ROOT_DIRS = ("/", "/Users", "/Shared", "/Repos", "/Workspace", "/Workspace/Users", "/Workspace/Shared")
_WORKSPACE_HOME_RE = re.compile(r"^(/Workspace)?/Users/[^/]+$")

_ERROR_CODE_BY_STATUS = {
    400: "INVALID_PARAMETER_VALUE",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "RESOURCE_DOES_NOT_EXIST",
    409: "RESOURCE_CONFLICT",
    429: "TEMPORARILY_UNAVAILABLE",
}


class ApiError(Exception):
    """A Databricks error answer: HTTP ``status`` with ``{"error_code": ..., "message": ...}``."""

    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(f"{status} {error_code}: {message}")
        self.status = status
        self.error_code = error_code
        self.message = message

    def body(self) -> dict[str, str]:
        return {"error_code": self.error_code, "message": self.message}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_PARAMETER_VALUE", message)


@dataclass
class _TaskRun:
    run_id: int
    task_key: str
    kind: str
    spec: dict[str, Any]


@dataclass
class _Run:
    run_id: int
    job_id: int
    run_name: str
    payload: dict[str, Any]
    tasks: list[_TaskRun]
    states: list[tuple[str, str | None, str]]
    notebook_result: str | None
    logs: str | None
    error: str | None
    error_trace: str | None
    start_time: int
    idempotency_token: str | None = None
    gets: int = 0
    state_index: int = 0
    cancelled: bool = False
    cancel_state: tuple[str, str | None, str] | None = None
    end_time: int = 0

    @property
    def state(self) -> tuple[str, str | None, str]:
        return self.cancel_state or self.states[self.state_index]

    @property
    def is_terminal(self) -> bool:
        return self.state[0] in TERMINAL_LIFE_CYCLE_STATES


@dataclass
class _Script:
    states: list[tuple[str, str | None, str]]
    notebook_result: str | None = None
    logs: str | None = None
    error: str | None = None
    error_trace: str | None = None


@dataclass
class _FailureRule:
    status: int
    remaining: int
    path_suffix: str | None
    error_code: str
    message: str | None = None


@dataclass
class _Upload:
    path: str
    overwrite: bool
    chunks: list[bytes] = field(default_factory=list)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _int_like(value: Any) -> int | None:
    """``value`` as an int when it is one or a decimal string (the provider stringifies numbers)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _bool_like(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"Invalid value for field {name}: expected a boolean, got {value!r}")


def _required_int(params: dict[str, Any], name: str) -> int:
    if params.get(name) is None:
        raise _invalid(f"Missing required field: {name}")
    value = _int_like(params[name])
    if value is None:
        raise _invalid(f"Invalid value for field {name}: expected an integer, got {params[name]!r}")
    return value


def _decode_base64(value: Any, name: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise _invalid(f"Invalid value for field {name}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as err:
        raise _invalid(f"Invalid value for field {name}: not valid base64 ({err})") from None


def _dbfs_path(value: Any) -> str:
    """A DBFS path normalised to ``/x``: ``dbfs:/x`` and ``/x`` are the same file."""
    if value is None or value == "":
        raise _invalid("Missing required field: path")
    if not isinstance(value, str):
        raise _invalid(f"Invalid value for field path: expected a string, got {value!r}")
    path = value[len("dbfs:") :] if value.startswith("dbfs:") else value
    if not path.startswith("/"):
        raise _invalid(f"Path must be absolute: {value}")
    return _collapse(path)


def _workspace_path(value: Any) -> str:
    if value is None or value == "":
        raise _invalid("Missing required field: path")
    if not isinstance(value, str):
        raise _invalid(f"Invalid value for field path: expected a string, got {value!r}")
    if not value.startswith("/"):
        raise _invalid(f"Path ({value}) doesn't start with '/'")
    return _collapse(value)


def _collapse(path: str) -> str:
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``["/", "/a", "/a/b"]``."""
    found = []
    while path != "/":
        path = _parent(path)
        found.append(path)
    return found[::-1]


def _is_under(path: str, folder: str) -> bool:
    return folder == "/" or path.startswith(folder + "/")


def _state_json(state: tuple[str, str | None, str], *, user_cancelled: bool) -> dict[str, Any]:
    life_cycle_state, result_state, state_message = state
    body: dict[str, Any] = {"life_cycle_state": life_cycle_state}
    if result_state is not None:
        body["result_state"] = result_state
    body["state_message"] = state_message
    body["user_cancelled_or_timedout"] = user_cancelled or result_state in ("CANCELED", "TIMEDOUT")
    return body


_STATUS_STATE = {
    "PENDING": "PENDING",
    "QUEUED": "QUEUED",
    "RUNNING": "RUNNING",
    "TERMINATING": "TERMINATING",
    "TERMINATED": "TERMINATED",
    "SKIPPED": "TERMINATED",
    "INTERNAL_ERROR": "TERMINATED",
    "BLOCKED": "BLOCKED",
    "WAITING_FOR_RETRY": "WAITING",
}


def _status_json(state: tuple[str, str | None, str], *, user_cancelled: bool) -> dict[str, Any]:
    """The newer ``status`` object (``RunStatus``) that runs/get returns next to ``state``."""
    life_cycle_state, result_state, state_message = state
    status: dict[str, Any] = {"state": _STATUS_STATE[life_cycle_state]}
    if life_cycle_state == "SKIPPED":
        code, kind = "SKIPPED", "SUCCESS"
    elif life_cycle_state == "INTERNAL_ERROR":
        code, kind = "INTERNAL_ERROR", "INTERNAL_ERROR"
    elif result_state == "SUCCESS":
        code, kind = "SUCCESS", "SUCCESS"
    elif result_state == "CANCELED":
        code, kind = ("USER_CANCELED" if user_cancelled else "CANCELED"), "SUCCESS"
    elif result_state is not None:
        code, kind = "RUN_EXECUTION_ERROR", "CLIENT_ERROR"
    else:
        return status
    status["termination_details"] = {"code": code, "type": kind, "message": state_message}
    return status


def _check_str_map(value: Any, where: str) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _invalid(f"{where} must be an object whose values are all strings, got {value!r}")


def _check_str_list(value: Any, where: str) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(f"{where} must be a list of strings, got {value!r}")


def _check_timeout(value: Any, where: str) -> None:
    seconds = _int_like(value)
    if seconds is None or seconds < 0:
        raise _invalid(f"{where} must be a non-negative integer, got {value!r}")


def _check_new_cluster(cluster: Any, where: str) -> None:
    if not isinstance(cluster, dict):
        raise _invalid(f"{where}.new_cluster must be an object")
    if not isinstance(cluster.get("spark_version"), str) or not cluster["spark_version"]:
        raise _invalid(f"Missing required field: {where}.new_cluster.spark_version")
    if not cluster.get("node_type_id") and not cluster.get("instance_pool_id"):
        raise _invalid(f"{where}.new_cluster needs node_type_id or instance_pool_id")
    if "num_workers" in cluster:
        workers = _int_like(cluster["num_workers"])
        if workers is None or workers < 0:
            raise _invalid(f"{where}.new_cluster.num_workers must be a non-negative integer")
    if "autoscale" in cluster:
        autoscale = cluster["autoscale"]
        if not isinstance(autoscale, dict):
            raise _invalid(f"{where}.new_cluster.autoscale must be an object")
        low, high = _int_like(autoscale.get("min_workers")), _int_like(autoscale.get("max_workers"))
        if low is None or high is None or low < 0 or high < low:
            raise _invalid(f"{where}.new_cluster.autoscale needs integer min_workers <= max_workers, got {autoscale!r}")
    for name in ("spark_conf", "spark_env_vars", "custom_tags", "cluster_log_conf"):
        if name in cluster and not isinstance(cluster[name], dict):
            raise _invalid(f"{where}.new_cluster.{name} must be an object")
    if "init_scripts" in cluster and not (
        isinstance(cluster["init_scripts"], list) and all(isinstance(s, dict) for s in cluster["init_scripts"])
    ):
        raise _invalid(f"{where}.new_cluster.init_scripts must be a list of objects")


def _check_task(task: Any, index: int) -> str:
    """Validate one entry of ``tasks``; return its kind."""
    where = f"tasks[{index}]"
    if not isinstance(task, dict):
        raise _invalid(f"{where} must be an object")
    task_key = task.get("task_key")
    if not isinstance(task_key, str) or not task_key:
        raise _invalid(f"Missing required field: {where}.task_key")
    if not _TASK_KEY_RE.match(task_key):
        raise _invalid(f"{where}.task_key {task_key!r} may only contain letters, digits, '_' and '-' (max 100)")
    where = f"task {task_key!r}"
    kinds = [kind for kind in (*TASK_KINDS, *OTHER_TASK_KINDS) if kind in task]
    if len(kinds) != 1:
        raise _invalid(f"{where} must set exactly one of {', '.join(TASK_KINDS)}; it sets {kinds or 'none'}")
    kind = kinds[0]
    if kind not in TASK_KINDS:
        raise _invalid(f"{where}: {kind} is not supported by this stand-in (only {', '.join(TASK_KINDS)})")
    spec = task[kind]
    if not isinstance(spec, dict):
        raise _invalid(f"{where}.{kind} must be an object")
    if kind == "notebook_task":
        if not isinstance(spec.get("notebook_path"), str) or not spec["notebook_path"]:
            raise _invalid(f"Missing required field: {where}.notebook_task.notebook_path")
        if "base_parameters" in spec:
            _check_str_map(spec["base_parameters"], f"{where}.notebook_task.base_parameters")
    elif kind == "spark_python_task":
        if not isinstance(spec.get("python_file"), str) or not spec["python_file"]:
            raise _invalid(f"Missing required field: {where}.spark_python_task.python_file")
        if "parameters" in spec:
            _check_str_list(spec["parameters"], f"{where}.spark_python_task.parameters")
    else:
        if not isinstance(spec.get("main_class_name"), str) or not spec["main_class_name"]:
            raise _invalid(f"Missing required field: {where}.spark_jar_task.main_class_name")
        if "parameters" in spec:
            _check_str_list(spec["parameters"], f"{where}.spark_jar_task.parameters")
    clusters = [name for name in CLUSTER_KINDS if task.get(name) is not None]
    if len(clusters) != 1:
        raise _invalid(f"{where} must set exactly one of {', '.join(CLUSTER_KINDS)}; it sets {clusters or 'none'}")
    if clusters[0] == "existing_cluster_id":
        if not isinstance(task["existing_cluster_id"], str) or not task["existing_cluster_id"]:
            raise _invalid(f"{where}.existing_cluster_id must be a non-empty string")
    else:
        _check_new_cluster(task["new_cluster"], where)
    if "libraries" in task and not (
        isinstance(task["libraries"], list) and all(isinstance(lib, dict) for lib in task["libraries"])
    ):
        raise _invalid(f"{where}.libraries must be a list of objects")
    if "timeout_seconds" in task:
        _check_timeout(task["timeout_seconds"], f"{where}.timeout_seconds")
    return kind


def _check_submit(body: dict[str, Any]) -> list[str]:
    """Validate a runs/submit body; return the kind of each task."""
    tasks = body.get("tasks")
    if not isinstance(tasks, list) or not tasks:
        raise _invalid("tasks must be a non-empty list of tasks")
    kinds = [_check_task(task, index) for index, task in enumerate(tasks)]
    keys = [task["task_key"] for task in tasks]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise _invalid(f"Task keys must be unique within a run: {', '.join(duplicates)}")
    if "run_name" in body and not isinstance(body["run_name"], str):
        raise _invalid(f"run_name must be a string, got {body['run_name']!r}")
    if "timeout_seconds" in body:
        _check_timeout(body["timeout_seconds"], "timeout_seconds")
    token = body.get("idempotency_token")
    if token is not None and (not isinstance(token, str) or len(token) > MAX_IDEMPOTENCY_TOKEN_LENGTH):
        raise _invalid(f"idempotency_token must be a string of at most {MAX_IDEMPOTENCY_TOKEN_LENGTH} characters")
    return kinds


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the owning :class:`DatabricksServer`, writes its JSON answer."""

    server: QuietHTTPServer
    # HTTP/1.0: one request per connection, so nothing is served once stop() has returned.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        return read_body(self)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        query = parse_query(split.query)
        raw = self._read_body()
        malformed = False
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body, malformed = raw.decode("utf-8", errors="replace"), True
        request = RecordedRequest(
            method=self.command, path=split.path, query=query, body=body, headers=dict(self.headers.items())
        )
        status, answer = self.server.owner._serve(request, malformed)
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class DatabricksServer(LoopbackServer):
    """A Databricks workspace API on ``127.0.0.1``, for one test (or one module) at a time.

    :param token: the only personal access token it accepts (``Authorization: Bearer <token>``)
    :param port: TCP port to listen on; 0 picks a free one
    :param polls_per_state: how many ``runs/get`` of a run return each scripted state before the next
    """

    handler = _Handler

    def __init__(self, token: str = DEFAULT_TOKEN, *, port: int = 0, polls_per_state: int = 1) -> None:
        if polls_per_state < 1:
            raise ValueError("polls_per_state must be at least 1")
        self._listen_on(port)
        self.token = token
        self.polls_per_state = polls_per_state
        #: Every request, in the order received (failed, unauthenticated and unknown ones included).
        self.requests: list[RecordedRequest] = []
        #: Run ids as sent to ``runs/cancel`` (a run's or a task run's), in order.
        self.cancelled: list[int] = []
        #: DBFS files: normalised path (``/x``) -> contents. Folders are in :attr:`dbfs_dirs`.
        self.dbfs: dict[str, bytes] = {}
        self.dbfs_dirs: set[str] = {"/"}
        #: Workspace objects imported: path -> decoded content. Folders are in :attr:`workspace_dirs`.
        self.workspace_files: dict[str, bytes] = {}
        self.workspace_dirs: set[str] = set(_WORKSPACE_ROOT_DIRS)
        #: Exceptions raised by the server's own code while answering (each answered 500 INTERNAL_ERROR).
        self.internal_errors: list[BaseException] = []
        self._lock = threading.RLock()
        self._runs: dict[int, _Run] = {}
        self._task_owner: dict[int, int] = {}
        self._submitted: list[dict[str, Any]] = []
        self._idempotency: dict[str, int] = {}
        self._scripts: deque[_Script] = deque()
        self._failures: list[_FailureRule] = []
        self._uploads: dict[int, _Upload] = {}
        self._next_id = FIRST_RUN_ID
        self._next_job_id = FIRST_JOB_ID
        self._next_handle = FIRST_DBFS_HANDLE
        self._routes = self._build_routes()

    # -- test controls and inspection ------------------------------------------------------------------

    def requests_to(self, suffix: str) -> list[RecordedRequest]:
        """The recorded requests whose path ends with ``suffix`` (e.g. ``"jobs/runs/submit"``)."""
        with self._lock:
            return [request for request in self.requests if request.path.endswith(suffix)]

    def submitted(self) -> list[dict[str, Any]]:
        """The bodies of the ``runs/submit`` requests that created a run, in order.

        A repeated ``idempotency_token`` creates no run and so adds nothing here; see
        ``requests_to("jobs/runs/submit")`` for every attempt.
        """
        with self._lock:
            return copy.deepcopy(self._submitted)

    def script_next_run(
        self,
        states: list[tuple[str, str | None, str]],
        *,
        notebook_result: str | None = None,
        logs: str | None = None,
        error: str | None = None,
        error_trace: str | None = None,
    ) -> None:
        """Queue how the next submitted run behaves (scripts are used in the order queued).

        :param states: ``(life_cycle_state, result_state, state_message)`` in order; only the last may
            be terminal (``TERMINATED``, ``SKIPPED``, ``INTERNAL_ERROR``)
        :param notebook_result: the ``dbutils.notebook.exit`` value runs/get-output reports for a notebook task
        :param logs: the stdout runs/get-output reports for a spark_python_task / spark_jar_task
        :param error: the ``error`` runs/get-output reports
        :param error_trace: the ``error_trace`` runs/get-output reports
        """
        checked = []
        for position, entry in enumerate(states):
            life_cycle_state, result_state, state_message = entry
            if life_cycle_state not in LIFE_CYCLE_STATES:
                raise ValueError(f"unknown life_cycle_state {life_cycle_state!r}")
            if result_state is not None and result_state not in RESULT_STATES:
                raise ValueError(f"unknown result_state {result_state!r}")
            if life_cycle_state in TERMINAL_LIFE_CYCLE_STATES and position != len(states) - 1:
                raise ValueError(f"terminal state {entry!r} must be the last one: a finished run never changes")
            checked.append((life_cycle_state, result_state, state_message))
        if not checked:
            raise ValueError("states must not be empty")
        with self._lock:
            self._scripts.append(_Script(checked, notebook_result, logs, error, error_trace))

    def finish_run(self, run_id: int, result_state: str = "SUCCESS", state_message: str = "") -> None:
        """End a run whose script stopped on a non-terminal state (held until the test says so).

        The next ``runs/get`` of the run reports ``TERMINATED`` with ``result_state``.
        """
        if result_state not in RESULT_STATES:
            raise ValueError(f"unknown result_state {result_state!r}")
        with self._lock:
            run = self._find_run(run_id)
            if run is None:
                raise KeyError(f"no run {run_id}")
            if run.is_terminal:
                raise ValueError(f"run {run_id} has already ended: a finished run never changes")
            run.states.append(("TERMINATED", result_state, state_message))

    def run(self, run_id: int) -> dict[str, Any]:
        """The server's record of a run (``run_id`` may also be one of its task runs' ids)."""
        with self._lock:
            run = self._find_run(run_id)
            if run is None:
                raise KeyError(f"no run {run_id}")
            lc, rs, msg = run.state
            return copy.deepcopy(
                {
                    "run_id": run.run_id,
                    "job_id": run.job_id,
                    "run_name": run.run_name,
                    "payload": run.payload,
                    "task_run_ids": [task.run_id for task in run.tasks],
                    "tasks": [{"run_id": t.run_id, "task_key": t.task_key, "kind": t.kind} for t in run.tasks],
                    "states": run.states,
                    "state_index": run.state_index,
                    "gets": run.gets,
                    "state": {"life_cycle_state": lc, "result_state": rs, "state_message": msg},
                    "cancelled": run.cancelled,
                    "idempotency_token": run.idempotency_token,
                    "notebook_result": run.notebook_result,
                    "logs": run.logs,
                    "error": run.error,
                    "error_trace": run.error_trace,
                    "start_time": run.start_time,
                    "end_time": run.end_time,
                }
            )

    def fail_next(
        self,
        status: int,
        times: int = 1,
        path_suffix: str | None = None,
        *,
        error_code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` requests (whose path ends with ``path_suffix``, if given) with ``status``.

        The body is a Databricks error: ``TEMPORARILY_UNAVAILABLE`` for 5xx and 429, otherwise the usual
        code for the status (``error_code`` overrides it, e.g. ``COULD_NOT_ACQUIRE_LOCK`` with 400, which
        the hook retries). Injected failures come before authentication and never change any state.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if times < 1:
            raise ValueError("times must be at least 1")
        code = error_code or ("TEMPORARILY_UNAVAILABLE" if status >= 500 else _ERROR_CODE_BY_STATUS.get(status))
        with self._lock:
            self._failures.append(_FailureRule(status, times, path_suffix, code or "BAD_REQUEST", message))

    # -- request handling ----------------------------------------------------------------------------

    def _serve(self, request: RecordedRequest, malformed: bool) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(request)
            try:
                injected = self._take_failure(request)
                if injected is not None:
                    raise injected
                self._authenticate(request)
                handler = self._routes.get((request.method, request.path))
                if handler is None:
                    raise ApiError(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")
                if malformed or (request.body is not None and not isinstance(request.body, dict)):
                    raise ApiError(
                        400, "MALFORMED_REQUEST", "Invalid JSON given in the body of the request - expected a map"
                    )
                params = request.params if request.method == "GET" else dict(request.body or {})
                return 200, handler(params)
            except ApiError as err:
                return err.status, err.body()
            except Exception as err:
                self.internal_errors.append(err)
                return 500, {"error_code": "INTERNAL_ERROR", "message": f"{type(err).__name__}: {err}"}

    def _take_failure(self, request: RecordedRequest) -> ApiError | None:
        for rule in self._failures:
            if rule.remaining > 0 and (rule.path_suffix is None or request.path.endswith(rule.path_suffix)):
                rule.remaining -= 1
                self._failures = [r for r in self._failures if r.remaining > 0]
                if rule.message is not None:
                    message = rule.message
                elif rule.status >= 500 or rule.status == 429:
                    message = f"The service at {request.path} is temporarily unavailable. Please try again later."
                else:
                    message = f"Injected failure {rule.status} for {request.method} {request.path}"
                return ApiError(rule.status, rule.error_code, message)
        return None

    def _authenticate(self, request: RecordedRequest) -> None:
        authorization = request.header("Authorization")
        if authorization is None or not authorization.startswith("Bearer "):
            raise ApiError(
                401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API."
            )
        if authorization[len("Bearer ") :] != self.token:
            raise ApiError(401, "UNAUTHENTICATED", "Invalid access token.")

    def _build_routes(self) -> dict[tuple[str, str], Any]:
        routes: dict[tuple[str, str], Any] = {}
        for version in ("2.1", "2.2"):
            jobs = f"/api/{version}/jobs/runs"
            routes[("POST", f"{jobs}/submit")] = self._runs_submit
            routes[("GET", f"{jobs}/get")] = self._runs_get
            routes[("GET", f"{jobs}/get-output")] = self._runs_get_output
            routes[("POST", f"{jobs}/cancel")] = self._runs_cancel
        routes[("POST", "/api/2.0/dbfs/put")] = self._dbfs_put
        routes[("POST", "/api/2.0/dbfs/create")] = self._dbfs_create
        routes[("POST", "/api/2.0/dbfs/add-block")] = self._dbfs_add_block
        routes[("POST", "/api/2.0/dbfs/close")] = self._dbfs_close
        routes[("POST", "/api/2.0/dbfs/mkdirs")] = self._dbfs_mkdirs
        routes[("GET", "/api/2.0/dbfs/get-status")] = self._dbfs_get_status
        routes[("POST", "/api/2.0/dbfs/delete")] = self._dbfs_delete
        routes[("POST", "/api/2.0/workspace/mkdirs")] = self._workspace_mkdirs
        routes[("POST", "/api/2.0/workspace/import")] = self._workspace_import
        return routes

    # -- jobs ----------------------------------------------------------------------------------------

    def _take_id(self) -> int:
        value = self._next_id
        self._next_id += 1
        return value

    def _find_run(self, run_id: int) -> _Run | None:
        return self._runs.get(self._task_owner.get(run_id, run_id))

    def _lookup_run(self, params: dict[str, Any]) -> tuple[_Run, _TaskRun | None]:
        run_id = _required_int(params, "run_id")
        run = self._find_run(run_id)
        if run is None:
            raise ApiError(400, "RESOURCE_DOES_NOT_EXIST", f"Run {run_id} does not exist.")
        task = next((t for t in run.tasks if t.run_id == run_id), None)
        return run, task

    def _runs_submit(self, body: dict[str, Any]) -> dict[str, Any]:
        kinds = _check_submit(body)
        token = body.get("idempotency_token")
        if token is not None and token in self._idempotency:
            return {"run_id": self._idempotency[token]}
        script = self._scripts.popleft() if self._scripts else _Script(list(DEFAULT_RUN_SCRIPT))
        run_id = self._take_id()
        tasks = [
            _TaskRun(self._take_id(), task["task_key"], kind, copy.deepcopy(task))
            for task, kind in zip(body["tasks"], kinds, strict=True)
        ]
        self._runs[run_id] = _Run(
            run_id=run_id,
            job_id=self._next_job_id,
            run_name=body.get("run_name") or "Untitled",
            payload=copy.deepcopy(body),
            tasks=tasks,
            states=script.states,
            notebook_result=script.notebook_result,
            logs=script.logs,
            error=script.error,
            error_trace=script.error_trace,
            start_time=_now_ms(),
            idempotency_token=token,
        )
        self._next_job_id += 1
        for task in tasks:
            self._task_owner[task.run_id] = run_id
        if token is not None:
            self._idempotency[token] = run_id
        self._submitted.append(copy.deepcopy(body))
        return {"run_id": run_id}

    def _page_url(self, run: _Run, run_id: int) -> str:
        return f"{self.url}/?o=0#job/{run.job_id}/run/{run_id}"

    def _task_view(self, run: _Run, task: _TaskRun) -> dict[str, Any]:
        state = run.state
        end_time = run.end_time
        return {
            **copy.deepcopy(task.spec),
            "run_id": task.run_id,
            "task_key": task.task_key,
            "state": _state_json(state, user_cancelled=run.cancelled),
            "status": _status_json(state, user_cancelled=run.cancelled),
            "run_page_url": self._page_url(run, task.run_id),
            "start_time": run.start_time,
            "end_time": end_time,
            "setup_duration": 0,
            "execution_duration": max(0, end_time - run.start_time) if end_time else 0,
            "cleanup_duration": 0,
            "attempt_number": 0,
        }

    def _run_view(self, run: _Run, task: _TaskRun | None, *, include_history: bool = False) -> dict[str, Any]:
        """runs/get of the run, or of one of its task runs when ``task`` is given."""
        state = run.state
        view: dict[str, Any] = {
            "job_id": run.job_id,
            "run_id": run.run_id if task is None else task.run_id,
            "creator_user_name": "contract-tests@example.com",
            "number_in_job": run.run_id if task is None else task.run_id,
            "original_attempt_run_id": run.run_id if task is None else task.run_id,
            "state": _state_json(state, user_cancelled=run.cancelled),
            "status": _status_json(state, user_cancelled=run.cancelled),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "setup_duration": 0,
            "execution_duration": 0,
            "cleanup_duration": 0,
            "run_duration": max(0, run.end_time - run.start_time) if run.end_time else 0,
            "run_name": run.run_name if task is None else task.task_key,
            "run_page_url": self._page_url(run, run.run_id if task is None else task.run_id),
            "run_type": "SUBMIT_RUN",
            "attempt_number": 0,
            "format": "MULTI_TASK",
        }
        if task is None:
            view["tasks"] = [self._task_view(run, t) for t in run.tasks]
            if "timeout_seconds" in run.payload:
                view["timeout_seconds"] = run.payload["timeout_seconds"]
        else:
            view["parent_run_id"] = run.run_id
            view["task_key"] = task.task_key
            view["tasks"] = [self._task_view(run, task)]
        if include_history:
            view["repair_history"] = [
                {
                    "type": "ORIGINAL",
                    "start_time": run.start_time,
                    "end_time": run.end_time,
                    "state": _state_json(state, user_cancelled=run.cancelled),
                    "task_run_ids": [t.run_id for t in run.tasks],
                }
            ]
        return view

    def _runs_get(self, params: dict[str, Any]) -> dict[str, Any]:
        run, task = self._lookup_run(params)
        if run.cancel_state is None and not run.is_terminal:
            run.state_index = min(run.gets // self.polls_per_state, len(run.states) - 1)
        run.gets += 1
        if run.is_terminal and not run.end_time:
            run.end_time = _now_ms()
        include_history = _bool_like(params.get("include_history"), "include_history")
        return self._run_view(run, task, include_history=include_history)

    def _runs_get_output(self, params: dict[str, Any]) -> dict[str, Any]:
        run, task = self._lookup_run(params)
        if task is None:
            if len(run.tasks) != 1:
                raise _invalid(
                    f"Retrieving the output of runs with multiple tasks is not supported. Please retrieve the "
                    f"output of each individual task run instead (run {run.run_id} has {len(run.tasks)} tasks)."
                )
            output_task = run.tasks[0]
        else:
            output_task = task
        answer: dict[str, Any] = {"metadata": self._run_view(run, task)}
        if run.is_terminal:
            if output_task.kind == "notebook_task" and run.notebook_result is not None:
                answer["notebook_output"] = {"result": run.notebook_result, "truncated": False}
            if output_task.kind in ("spark_python_task", "spark_jar_task") and run.logs is not None:
                answer["logs"] = run.logs
                answer["logs_truncated"] = False
            if run.error is not None:
                answer["error"] = run.error
            if run.error_trace is not None:
                answer["error_trace"] = run.error_trace
        return answer

    def _runs_cancel(self, body: dict[str, Any]) -> dict[str, Any]:
        run_id = _required_int(body, "run_id")
        run, _ = self._lookup_run({"run_id": run_id})
        self.cancelled.append(run_id)
        if not run.is_terminal:
            run.cancelled = True
            run.cancel_state = CANCELLED_STATE
            run.end_time = _now_ms()
        return {}

    # -- DBFS ----------------------------------------------------------------------------------------

    def _dbfs_ensure_writable(self, path: str, overwrite: bool) -> None:
        if path in self.dbfs_dirs:
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A directory already exists at {path}")
        if path in self.dbfs and not overwrite:
            raise ApiError(
                400, "RESOURCE_ALREADY_EXISTS", f"A file or directory already exists at the input path {path}."
            )
        for folder in _ancestors(path):
            if folder in self.dbfs:
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file already exists at {folder}, a parent of {path}")

    def _dbfs_write(self, path: str, data: bytes) -> None:
        self.dbfs_dirs.update(_ancestors(path))
        self.dbfs[path] = data

    def _dbfs_put(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _dbfs_path(body.get("path"))
        data = _decode_base64(body.get("contents"), "contents")
        if len(data) > MAX_BLOCK_BYTES:
            raise ApiError(
                400,
                "MAX_BLOCK_SIZE_EXCEEDED",
                f"File uploaded directly is {len(data)} bytes, exceeding the maximum of {MAX_BLOCK_BYTES} bytes. "
                "Use dbfs/create, dbfs/add-block and dbfs/close for larger files.",
            )
        self._dbfs_ensure_writable(path, _bool_like(body.get("overwrite"), "overwrite"))
        self._dbfs_write(path, data)
        return {}

    def _dbfs_create(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _dbfs_path(body.get("path"))
        overwrite = _bool_like(body.get("overwrite"), "overwrite")
        self._dbfs_ensure_writable(path, overwrite)
        handle = self._next_handle
        self._next_handle += 1
        self._uploads[handle] = _Upload(path, overwrite)
        return {"handle": handle}

    def _upload(self, body: dict[str, Any]) -> tuple[int, _Upload]:
        handle = _required_int(body, "handle")
        upload = self._uploads.get(handle)
        if upload is None:
            raise ApiError(400, "RESOURCE_DOES_NOT_EXIST", f"Handle {handle} does not exist or has been closed.")
        return handle, upload

    def _dbfs_add_block(self, body: dict[str, Any]) -> dict[str, Any]:
        _, upload = self._upload(body)
        data = _decode_base64(body.get("data"), "data")
        if len(data) > MAX_BLOCK_BYTES:
            raise ApiError(
                400,
                "MAX_BLOCK_SIZE_EXCEEDED",
                f"Block of {len(data)} bytes exceeds the maximum block size of {MAX_BLOCK_BYTES} bytes.",
            )
        upload.chunks.append(data)
        return {}

    def _dbfs_close(self, body: dict[str, Any]) -> dict[str, Any]:
        handle, upload = self._upload(body)
        del self._uploads[handle]
        self._dbfs_ensure_writable(upload.path, upload.overwrite)
        self._dbfs_write(upload.path, b"".join(upload.chunks))
        return {}

    def _dbfs_mkdirs(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _dbfs_path(body.get("path"))
        for folder in [*_ancestors(path), path]:
            if folder in self.dbfs:
                raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"A file already exists at {folder}")
        self.dbfs_dirs.update([*_ancestors(path), path])
        return {}

    def _dbfs_get_status(self, params: dict[str, Any]) -> dict[str, Any]:
        path = _dbfs_path(params.get("path"))
        if path in self.dbfs:
            return {"path": path, "is_dir": False, "file_size": len(self.dbfs[path]), "modification_time": _now_ms()}
        if path in self.dbfs_dirs:
            return {"path": path, "is_dir": True, "file_size": 0, "modification_time": _now_ms()}
        raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"No file or directory exists on path {path}.")

    def _dbfs_delete(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _dbfs_path(body.get("path"))
        recursive = _bool_like(body.get("recursive"), "recursive")
        if path in self.dbfs:
            del self.dbfs[path]
        elif path in self.dbfs_dirs:
            files = [p for p in self.dbfs if _is_under(p, path)]
            dirs = [d for d in self.dbfs_dirs if d != path and _is_under(d, path)]
            if (files or dirs) and not recursive:
                raise ApiError(400, "IO_ERROR", f"Directory {path} is not empty; set recursive to delete it.")
            for name in files:
                del self.dbfs[name]
            self.dbfs_dirs.difference_update(dirs)
            if path != "/":
                self.dbfs_dirs.discard(path)
        return {}

    # -- Workspace -----------------------------------------------------------------------------------

    def _workspace_dir_exists(self, path: str) -> bool:
        return path in self.workspace_dirs or bool(_WORKSPACE_HOME_RE.match(path))

    def _workspace_mkdirs(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _workspace_path(body.get("path"))
        for folder in [*_ancestors(path), path]:
            if folder in self.workspace_files:
                raise ApiError(
                    400, "RESOURCE_ALREADY_EXISTS", f"Cannot create directory {path}: {folder} is not a directory"
                )
        self.workspace_dirs.update([*_ancestors(path), path])
        return {}

    def _workspace_import(self, body: dict[str, Any]) -> dict[str, Any]:
        path = _workspace_path(body.get("path"))
        format_ = body.get("format") or "SOURCE"
        if format_ not in WORKSPACE_FORMATS:
            raise _invalid(f"Invalid format {format_!r}; expected one of {', '.join(sorted(WORKSPACE_FORMATS))}")
        language = body.get("language")
        if language is not None and language not in WORKSPACE_LANGUAGES:
            raise _invalid(f"Invalid language {language!r}; expected one of {', '.join(sorted(WORKSPACE_LANGUAGES))}")
        if format_ == "SOURCE" and language is None:
            raise _invalid("The language field is required to import a single file in SOURCE format.")
        content = _decode_base64(body.get("content"), "content")
        if len(content) > MAX_IMPORT_BYTES:
            raise ApiError(
                400, "MAX_NOTEBOOK_SIZE_EXCEEDED", f"Content of {len(content)} bytes exceeds the 10 MB import limit."
            )
        overwrite = _bool_like(body.get("overwrite"), "overwrite")
        parent = _parent(path)
        if not self._workspace_dir_exists(parent):
            raise ApiError(404, "RESOURCE_DOES_NOT_EXIST", f"The parent folder ({parent}) does not exist.")
        if self._workspace_dir_exists(path) or (path in self.workspace_files and not overwrite):
            raise ApiError(400, "RESOURCE_ALREADY_EXISTS", f"{path} already exists.")
        self.workspace_files[path] = content
        return {}
