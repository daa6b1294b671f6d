"""A loopback stand-in for the Docker Engine API, for contract tests on machines without a Docker engine.

Written from Docker's public Engine API reference (v1.43): ``/_ping``, ``/version``, image inspect and
create (pull), and the container life cycle (create, start, inspect, logs, wait, stop, kill, delete). It
answers what ``docker.APIClient`` sends (so what ``airflow.providers.docker.hooks.docker.DockerHook``
builds), records every request and plays a scripted outcome per container::

    with DockerEngineStandIn() as engine:
        engine.script(image="python:3.11-slim", stdout=["line 1", "line 2"], stderr=["warn"], exit_code=3)
        engine.missing_images = {"private/none:1"}  # pulls of it fail with 404
        client = docker.APIClient(base_url=engine.url, version="1.43")
        ...  # code under test
        (only,) = engine.containers.values()
        assert only["create"]["HostConfig"]["Memory"] == 512 * 1024 * 1024
        assert not engine.unhandled

Paths may carry any ``/v1.XX`` prefix; versions above :attr:`DockerEngineStandIn.api_version` or below
:data:`MIN_API_VERSION` are refused with 400, as the engine does. Requests are recorded without the
prefix. An endpoint the stand-in does not implement answers 404 ``not implemented in the stand-in: ...``
and is listed in :attr:`DockerEngineStandIn.unhandled`, so a test notices calls it did not expect.

Time model: a container runs from ``start`` for its script's ``run_seconds`` (at least until its last
output line, lines coming ``line_delay`` apart, the first one at once), then exits with the scripted code.
``stop`` and ``kill`` end a running container at once with 137 (``kill`` with another signal: 128 + its
number); lines not yet due are then never written. ``HostConfig.AutoRemove`` removes it once it exits.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import secrets
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from tests.support.loopback import LoopbackServer, QuietHTTPServer, parse_query, read_body

#: The highest API version the stand-in speaks unless told otherwise; also what ``/version`` reports.
DEFAULT_API_VERSION = "1.43"
#: The lowest API version it accepts (what Docker 24 reports as ``MinAPIVersion``).
MIN_API_VERSION = "1.12"
ENGINE_VERSION = "24.0.0"
#: Exit code of a container ended by ``stop`` or by ``kill`` with SIGKILL (128 + 9).
KILLED_EXIT_CODE = 137
STDOUT, STDERR = 1, 2
RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"
_ZERO_TIME = "0001-01-01T00:00:00Z"
_VERSION_PREFIX = re.compile(r"^/v(\d+\.\d+)(?=/)")
_CONTAINER_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
#: Longest a blocked wait or followed log sleeps without looking again (a safety net; changes notify).
_MAX_SLEEP = 0.5


class DockerRequest(NamedTuple):
    """One request as the stand-in received it; unpacks as ``method, path, query, body``.

    :param method: ``"GET"``, ``"POST"``, ``"DELETE"``, ...
    :param path: the URL path, percent-decoded, without the ``/v1.XX`` prefix
    :param query: the query string, one value per name (the first one)
    :param body: the parsed JSON body, ``None`` when empty (the raw text when it is not JSON)
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any


@dataclass(frozen=True)
class ContainerScript:
    """How containers matching ``image`` (and ``name``, if set) behave; see :meth:`DockerEngineStandIn.script`."""

    image: str | None
    name: str | None
    output: tuple[tuple[int, str], ...]
    exit_code: int
    run_seconds: float
    line_delay: float
    oom_killed: bool
    error: str

    @property
    def duration(self) -> float:
        """Seconds from start to exit: the scripted run time, but never before the last line is written."""
        last_line = (len(self.output) - 1) * self.line_delay if self.output else 0.0
        return max(self.run_seconds, last_line)


_DEFAULT_SCRIPT = ContainerScript(None, None, (), 0, 0.0, 0.0, False, "")


class _ApiError(Exception):
    """An engine error answer: HTTP ``status`` with ``{"message": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


@dataclass
class _Answer:
    """What the handler writes: a whole body, or ``chunks`` sent with chunked transfer encoding."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    chunks: Iterator[bytes] | None = None


def _json_answer(status: int, document: Any) -> _Answer:
    return _Answer(status, json.dumps(document).encode(), "application/json")


def _no_content(status: int = 204) -> _Answer:
    return _Answer(status)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _rfc3339(wall: float | None) -> str:
    """Docker's timestamp format (nanosecond precision, UTC); the zero time for ``None``."""
    if wall is None:
        return _ZERO_TIME
    return datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def _flag(value: str | None) -> bool:
    """A boolean query parameter: docker-py sends ``1``/``0``, the CLI ``true``/``false``."""
    return (value or "").strip().lower() in ("1", "true", "yes")


def canonical_image(name: str) -> str:
    """``name`` as the engine resolves it: Docker Hub prefixes dropped, ``:latest`` added when untagged.

    ``python``, ``python:latest``, ``library/python`` and ``docker.io/library/python:latest`` are one image.
    """
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    if name.startswith("library/"):
        name = name[len("library/") :]
    last = name.rsplit("/", 1)[-1]  # a registry's ":port" is not a tag
    if ":" not in last and "@" not in name:
        name += ":latest"
    return name


def _split_reference(key: str) -> tuple[str, str]:
    """A canonical image reference as ``(repository, tag or digest)``."""
    repository, _, tag = key.rpartition("@") if "@" in key else key.rpartition(":")
    return repository, tag


def _image_id(name: str) -> str:
    return "sha256:" + hashlib.sha256(canonical_image(name).encode()).hexdigest()


def _signal_number(value: str | None) -> int:
    """``SIGKILL``, ``KILL`` or ``9`` -> 9; no value means SIGKILL, as for ``docker kill``."""
    if value is None or value == "":
        return signal.SIGKILL.value
    if value.strip().isdigit():
        return int(value)
    name = value.strip().upper()
    try:
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name].value
    except KeyError:
        raise _ApiError(400, f"Invalid signal: {value}") from None


@dataclass
class _Container:
    id: str
    name: str
    image: str
    body: dict[str, Any]
    script: ContainerScript
    created_wall: float
    started_at: float | None = None  # time.monotonic()
    started_wall: float | None = None
    ended_at: float | None = None  # set when stop/kill/forced removal ended the run early
    forced_exit_code: int | None = None
    stopped: bool = False
    killed: bool = False
    removed: bool = False
    auto_removed: bool = False
    remove_query: dict[str, str] | None = None

    @property
    def tty(self) -> bool:
        return bool(self.body.get("Tty"))

    @property
    def auto_remove(self) -> bool:
        return bool((self.body.get("HostConfig") or {}).get("AutoRemove"))

    def exit_time(self) -> float | None:
        """When the run ends (monotonic clock): its scripted end, or when it was stopped; ``None`` if not started."""
        if self.started_at is None:
            return None
        natural = self.started_at + self.script.duration
        return natural if self.ended_at is None else min(natural, self.ended_at)

    def running(self, now: float) -> bool:
        end = self.exit_time()
        return end is not None and now < end

    def exited(self, now: float) -> bool:
        end = self.exit_time()
        return end is not None and now >= end

    def status(self, now: float) -> str:
        if self.started_at is None:
            return "created"
        return "running" if self.running(now) else "exited"

    def exit_code(self, now: float) -> int:
        if not self.exited(now):
            return 0
        return self.forced_exit_code if self.forced_exit_code is not None else self.script.exit_code

    def end_now(self, now: float, exit_code: int) -> None:
        self.ended_at = now
        self.forced_exit_code = exit_code

    def line_time(self, index: int) -> float:
        assert self.started_at is not None
        return self.started_at + index * self.script.line_delay

    def lines_written(self, now: float) -> int:
        """How many scripted lines the container has written by ``now`` (none due after its exit)."""
        if self.started_at is None:
            return 0
        end = self.exit_time()
        horizon = now if end is None else min(now, end)
        return sum(1 for index in range(len(self.script.output)) if self.line_time(index) <= horizon)

    def next_change_in(self, now: float) -> float | None:
        """Seconds until this container's next line or exit; ``None`` when only a request can change it."""
        if self.started_at is None or self.exited(now):
            return None
        end = self.exit_time()
        due = [self.line_time(i) for i in range(self.lines_written(now), len(self.script.output))]
        upcoming = [t for t in [*due, end] if t is not None and t > now]
        return max(0.0, min(upcoming) - now) if upcoming else None


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the owning :class:`DockerEngineStandIn`, writes its answer."""

    server: QuietHTTPServer
    # HTTP/1.1 for chunked streams (pull progress, followed logs); every answer closes its connection, so
    # nothing is served from a kept-alive connection once stop() has returned.
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        split = urlsplit(self.path)
        answer = self.server.owner._serve(self.command, split.path, parse_query(split.query), read_body(self))
        try:
            self._write(answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, e.g. it stopped reading a followed log
        finally:
            if answer.chunks is not None:
                answer.chunks.close()

    def _write(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for name, value in {**self.server.owner._engine_headers(), **answer.headers}.items():
            self.send_header(name, value)
        if answer.content_type:
            self.send_header("Content-Type", answer.content_type)
        self.send_header("Connection", "close")
        if answer.chunks is not None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in answer.chunks:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        if answer.status not in (204, 304):
            self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if answer.body and self.command != "HEAD" and answer.status not in (204, 304):
            self.wfile.write(answer.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle


class DockerEngineStandIn(LoopbackServer):
    """A Docker engine API on ``127.0.0.1``: a context manager, or :meth:`start` / :meth:`stop`.

    :param api_version: the highest API version it accepts and the one ``/version`` reports
    :param port: TCP port to listen on; 0 picks a free one
    """

    handler = _Handler
    scheme = "tcp"  # docker-py's base_url

    def __init__(self, *, api_version: str = DEFAULT_API_VERSION, port: int = 0) -> None:
        self._listen_on(port)
        self.api_version = api_version
        #: Every request in the order received (refused and unknown ones included).
        self.requests: list[DockerRequest] = []
        #: Images present locally (any spelling :func:`canonical_image` resolves); ``None``: every image
        #: but :attr:`missing_images`. A successful pull adds its image when this is a set.
        self.present_images: set[str] | None = None
        #: Images no registry has: pulling one answers 404 ``pull access denied``; never present unless
        #: also listed in :attr:`present_images`.
        self.missing_images: set[str] = set()
        #: Images pulled successfully, as ``repository:tag`` (or ``repository@digest``), in order.
        self.pulled: list[str] = []
        #: Exceptions raised by the stand-in's own code while answering (each answered 500).
        self.internal_errors: list[BaseException] = []
        self._cond = threading.Condition(threading.RLock())
        self._scripts: list[ContainerScript] = []
        self._containers: dict[str, _Container] = {}
        self._unhandled: list[DockerRequest] = []
        self._stopping = threading.Event()
        self._routes = self._build_routes()

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> DockerEngineStandIn:
        self._stopping.clear()
        return super().start()

    def _before_stop(self) -> None:
        """End blocked waits and followed logs; the records stay readable."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()

    # -- scripting and inspection --------------------------------------------------------------------

    def script(
        self,
        image: str | None = None,
        *,
        name: str | None = None,
        stdout: Iterable[str] = (),
        stderr: Iterable[str] = (),
        output: Iterable[tuple[str, str]] | None = None,
        exit_code: int = 0,
        run_seconds: float = 0.0,
        line_delay: float = 0.0,
        oom_killed: bool = False,
        error: str = "",
    ) -> ContainerScript:
        """Script the containers created from ``image`` (any image if ``None``) and, if set, named ``name``.

        A container takes the first matching script, in the order scripted, when it is created; without
        one it exits 0 at once and writes nothing.

        :param stdout: lines written to stdout (a newline is added to each unless it ends with one)
        :param stderr: lines written to stderr, after the stdout ones
        :param output: ``("stdout" | "stderr", line)`` pairs in the order written; replaces ``stdout``/``stderr``
        :param exit_code: the exit code ``wait`` and inspect report after a normal end
        :param run_seconds: seconds from ``start`` to exit (never before the last line is due)
        :param line_delay: seconds between two lines of output (the first one comes at start)
        :param oom_killed: ``State.OOMKilled`` after a normal end
        :param error: ``State.Error`` and the ``Error.Message`` of ``wait``
        """
        if output is None:
            lines = [(STDOUT, line) for line in stdout] + [(STDERR, line) for line in stderr]
        else:
            streams = {"stdout": STDOUT, "stderr": STDERR}
            lines = []
            for stream, line in output:
                if stream not in streams:
                    raise ValueError(f"output stream must be 'stdout' or 'stderr', not {stream!r}")
                lines.append((streams[stream], line))
        if run_seconds < 0 or line_delay < 0:
            raise ValueError("run_seconds and line_delay must not be negative")
        script = ContainerScript(
            image=image,
            name=name.lstrip("/") if name else None,
            output=tuple(lines),
            exit_code=exit_code,
            run_seconds=run_seconds,
            line_delay=line_delay,
            oom_killed=oom_killed,
            error=error,
        )
        with self._cond:
            self._scripts.append(script)
        return script

    @property
    def containers(self) -> dict[str, dict[str, Any]]:
        """A snapshot of every container ever created, by id, in creation order.

        Each is ``{"id", "name", "image", "create" (the create body as sent), "started", "stopped",
        "killed" (a stop / kill request reached it), "removed", "auto_removed", "remove_query",
        "status" ("created" | "running" | "exited"), "exit_code"}``.
        """
        with self._cond:
            now = time.monotonic()
            for container in self._containers.values():
                self._auto_remove(container, now)
            return {cid: self._summary(c, now) for cid, c in self._containers.items()}

    def container(self, id_or_name: str) -> dict[str, Any]:
        """The snapshot (as in :attr:`containers`) of one container, by id, id prefix or name, removed or not."""
        summaries = list(self.containers.values())
        exact = [s for s in summaries if id_or_name in (s["id"], "/" + s["name"], s["name"])]
        found = exact or [s for s in summaries if s["id"].startswith(id_or_name)]
        if len(found) != 1:
            raise KeyError(f"no single container {id_or_name!r} (found {len(found)})")
        return found[0]

    @property
    def unhandled(self) -> list[DockerRequest]:
        """The requests that reached no implemented endpoint (each was answered 404)."""
        with self._cond:
            return list(self._unhandled)

    def requests_to(self, method: str, pattern: str) -> list[DockerRequest]:
        """The recorded requests with ``method`` whose path matches the regular expression ``pattern`` fully."""
        compiled = re.compile(pattern)
        with self._cond:
            return [r for r in self.requests if r.method == method and compiled.fullmatch(r.path)]

    # -- request handling ----------------------------------------------------------------------------

    def _engine_headers(self) -> dict[str, str]:
        return {
            "Api-Version": self.api_version,
            "Docker-Experimental": "false",
            "Ostype": "linux",
            "Server": f"Docker/{ENGINE_VERSION} (linux)",
        }

    def _build_routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., _Answer]]]:
        container = r"/containers/(?P<ref>[^/]+)"
        routes: list[tuple[str, str, Callable[..., _Answer]]] = [
            ("GET", r"/_ping", self._ping),
            ("HEAD", r"/_ping", self._ping),
            ("GET", r"/version", self._version),
            ("GET", r"/images/(?P<name>.+)/json", self._image_inspect),
            ("POST", r"/images/create", self._image_create),
            ("POST", r"/containers/create", self._container_create),
            ("GET", container + r"/json", self._container_inspect),
            ("POST", container + r"/start", self._container_start),
            ("GET", container + r"/logs", self._container_logs),
            ("POST", container + r"/wait", self._container_wait),
            ("POST", container + r"/stop", self._container_stop),
            ("POST", container + r"/kill", self._container_kill),
            ("DELETE", container, self._container_delete),
        ]
        return [(method, re.compile(pattern), handler) for method, pattern, handler in routes]

    def _serve(self, method: str, raw_path: str, query: dict[str, str], raw_body: bytes) -> _Answer:
        path = unquote(raw_path)
        version = None
        prefix = _VERSION_PREFIX.match(path)
        if prefix:
            version, path = prefix.group(1), path[prefix.end() :]
        body: Any = None
        malformed = False
        if raw_body.strip():
            try:
                body = json.loads(raw_body)
            except ValueError:
                body, malformed = raw_body.decode("utf-8", errors="replace"), True
        request = DockerRequest(method, path, query, body)
        with self._cond:
            self.requests.append(request)
            try:
                if version is not None:
                    self._check_version(version)
                for route_method, pattern, handler in self._routes:
                    match = pattern.fullmatch(path)
                    if match and route_method == method:
                        if malformed:
                            raise _ApiError(400, f"invalid JSON in the request body: {body[:200]!r}")
                        return handler(request, version or self.api_version, **match.groupdict())
                self._unhandled.append(request)
                return _json_answer(404, {"message": f"not implemented in the stand-in: {method} {path}"})
            except _ApiError as err:
                return _json_answer(err.status, {"message": err.message})
            except Exception as err:
                self.internal_errors.append(err)
                return _json_answer(500, {"message": f"stand-in failure: {type(err).__name__}: {err}"})

    def _check_version(self, version: str) -> None:
        if _version_key(version) > _version_key(self.api_version):
            raise _ApiError(
                400, f"client version {version} is too new. Maximum supported API version is {self.api_version}"
            )
        if _version_key(version) < _version_key(MIN_API_VERSION):
            raise _ApiError(
                400, f"client version {version} is too old. Minimum supported API version is {MIN_API_VERSION}"
            )

    # -- system --------------------------------------------------------------------------------------

    def _ping(self, request: DockerRequest, version: str) -> _Answer:
        headers = {"Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache"}
        return _Answer(200, b"OK", "text/plain; charset=utf-8", headers)

    def _version(self, request: DockerRequest, version: str) -> _Answer:
        return _json_answer(
            200,
            {
                "Platform": {"Name": "Docker Engine - Community (stand-in)"},
                "Version": ENGINE_VERSION,
                "ApiVersion": self.api_version,
                "MinAPIVersion": MIN_API_VERSION,
                "GitCommit": "standin",
                "GoVersion": "go1.20.4",
                "Os": "linux",
                "Arch": "amd64",
                "KernelVersion": "6.1.0",
                "BuildTime": "2023-05-16T08:27:39.000000000+00:00",
            },
        )

    # -- images --------------------------------------------------------------------------------------

    def _is_missing(self, key: str) -> bool:
        return any(canonical_image(name) == key for name in self.missing_images)

    def _is_present(self, key: str) -> bool:
        if self.present_images is None:
            return not self._is_missing(key)
        return any(canonical_image(name) == key for name in self.present_images)

    def _image_inspect(self, request: DockerRequest, version: str, name: str) -> _Answer:
        key = canonical_image(name)
        if not self._is_present(key):
            raise _ApiError(404, f"No such image: {name}")
        return _json_answer(
            200,
            {
                "Id": _image_id(key),
                "RepoTags": [name],
                "RepoDigests": [],
                "Created": _rfc3339(0),
                "Os": "linux",
                "Architecture": "amd64",
                "Size": 0,
                "Config": {"Cmd": None, "Entrypoint": None, "Env": [], "WorkingDir": "", "Labels": None},
            },
        )

    def _image_create(self, request: DockerRequest, version: str) -> _Answer:
        repository = request.query.get("fromImage", "")
        if not repository:
            if request.query.get("fromSrc"):
                raise _ApiError(404, "not implemented in the stand-in: image import (fromSrc)")
            raise _ApiError(400, "fromImage or fromSrc is required")
        tag = request.query.get("tag", "")
        if tag.startswith("sha256:"):
            reference = f"{repository}@{tag}"
        elif tag:
            reference = f"{repository}:{tag}"
        else:
            reference = repository
        key = canonical_image(reference)
        if self._is_missing(key) and not self._is_present(key):
            raise _ApiError(
                404,
                f"pull access denied for {_split_reference(key)[0]}, repository does not exist or may require "
                "'docker login': denied: requested access to the resource is denied",
            )
        already = self._is_present(key)
        if self.present_images is not None and not already:
            self.present_images.add(key)
        self.pulled.append(key)
        return _Answer(200, content_type="application/json", chunks=iter(_pull_progress(key, already)))

    # -- containers ----------------------------------------------------------------------------------

    def _lookup(self, ref: str) -> _Container:
        """A live container by full id, name or unique id prefix (404 otherwise)."""
        now = time.monotonic()
        live = [c for c in self._containers.values() if not self._auto_remove(c, now)]
        found = next((c for c in live if c.id == ref or c.name == ref.lstrip("/")), None)
        if found is None:
            by_prefix = [c for c in live if c.id.startswith(ref)]
            found = by_prefix[0] if len(by_prefix) == 1 else None
        if found is None:
            raise _ApiError(404, f"No such container: {ref}")
        return found

    def _auto_remove(self, container: _Container, now: float) -> bool:
        """Apply ``AutoRemove`` once the container has exited; return whether it is removed."""
        if not container.removed and container.auto_remove and container.exited(now):
            container.removed = container.auto_removed = True
            self._cond.notify_all()
        return container.removed

    def _pick_script(self, image: str, name: str) -> ContainerScript:
        key = canonical_image(image)
        for script in self._scripts:
            if script.image is not None and canonical_image(script.image) != key:
                continue
            if script.name is not None and script.name != name:
                continue
            return script
        return _DEFAULT_SCRIPT

    def _container_create(self, request: DockerRequest, version: str) -> _Answer:
        body = request.body
        if not isinstance(body, dict):
            raise _ApiError(400, "Config cannot be empty in order to create a container")
        image = body.get("Image")
        if not isinstance(image, str) or not image:
            raise _ApiError(400, "No image was specified for the container (Image is empty)")
        name = request.query.get("name", "")
        if name:
            if not _CONTAINER_NAME.match(name):
                raise _ApiError(400, f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
            name = name.lstrip("/")
            now = time.monotonic()
            clash = next(
                (c for c in self._containers.values() if c.name == name and not self._auto_remove(c, now)), None
            )
            if clash is not None:
                raise _ApiError(
                    409,
                    f'Conflict. The container name "/{name}" is already in use by container "{clash.id}". '
                    "You have to remove (or rename) that container to be able to reuse that name.",
                )
        else:
            name = f"standin_{len(self._containers) + 1}"
        if not self._is_present(canonical_image(image)):
            raise _ApiError(404, f"No such image: {image}")
        container_id = secrets.token_hex(32)
        self._containers[container_id] = _Container(
            id=container_id,
            name=name,
            image=image,
            body=copy.deepcopy(body),
            script=self._pick_script(image, name),
            created_wall=time.time(),
        )
        return _json_answer(201, {"Id": container_id, "Warnings": []})

    def _container_start(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        now = time.monotonic()
        if container.started_at is not None:
            if container.running(now):
                return _no_content(304)
            # A restart of an exited container is not scripted: refuse rather than invent a second run.
            raise _ApiError(409, f"the stand-in runs a container once; {container.id} has already exited")
        container.started_at, container.started_wall = now, time.time()
        self._cond.notify_all()
        return _no_content()

    def _container_inspect(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        return _json_answer(200, self._inspect(container, time.monotonic()))

    def _inspect(self, c: _Container, now: float) -> dict[str, Any]:
        status = c.status(now)
        exited = status == "exited"
        forced = c.forced_exit_code is not None
        argv = [*_as_list(c.body.get("Entrypoint")), *_as_list(c.body.get("Cmd"))]
        host_config = copy.deepcopy(c.body.get("HostConfig") or {})
        config = {
            "Hostname": c.body.get("Hostname") or c.id[:12],
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": [],
            "Cmd": None,
            "Image": c.image,
            "Volumes": None,
            "WorkingDir": "",
            "Entrypoint": None,
            "Labels": {},
        }
        config.update({k: copy.deepcopy(v) for k, v in c.body.items() if k not in ("HostConfig", "NetworkingConfig")})
        end = c.exit_time()
        finished_wall = None
        if exited and c.started_wall is not None and c.started_at is not None and end is not None:
            finished_wall = c.started_wall + (end - c.started_at)
        return {
            "Id": c.id,
            "Created": _rfc3339(c.created_wall),
            "Path": argv[0] if argv else "",
            "Args": argv[1:],
            "State": {
                "Status": status,
                "Running": status == "running",
                "Paused": False,
                "Restarting": False,
                "OOMKilled": exited and not forced and c.script.oom_killed,
                "Dead": False,
                "Pid": 4242 if status == "running" else 0,
                "ExitCode": c.exit_code(now),
                "Error": c.script.error if exited and not forced else "",
                "StartedAt": _rfc3339(c.started_wall),
                "FinishedAt": _rfc3339(finished_wall),
            },
            "Image": _image_id(c.image),
            "Name": "/" + c.name,
            "RestartCount": 0,
            "Driver": "overlay2",
            "Platform": "linux",
            "HostConfig": host_config,
            "Mounts": _mount_points(host_config),
            "Config": config,
            "NetworkSettings": {"Networks": {host_config.get("NetworkMode") or "bridge": {}}},
        }

    def _container_logs(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        query = request.query
        streams = {STDOUT} if _flag(query.get("stdout")) else set()
        if _flag(query.get("stderr")):
            streams.add(STDERR)
        if not streams:
            raise _ApiError(400, "Bad parameters: you must choose at least one stream")
        if container.tty:
            streams = {STDOUT, STDERR}  # a TTY merges both streams into one
        tail_value = query.get("tail", "all") or "all"
        tail = None if tail_value == "all" else int(tail_value) if tail_value.lstrip("-").isdigit() else None
        if tail is not None and tail < 0:
            tail = None
        follow = _flag(query.get("follow"))
        content_type = RAW_STREAM
        if not container.tty and _version_key(version) >= (1, 42):
            content_type = MULTIPLEXED_STREAM  # what the engine sends since API 1.42
        chunks = self._log_chunks(container, streams, _flag(query.get("timestamps")), tail, follow)
        return _Answer(200, content_type=content_type, chunks=chunks)

    def _log_chunks(
        self, c: _Container, streams: set[int], timestamps: bool, tail: int | None, follow: bool
    ) -> Iterator[bytes]:
        """The container's lines, framed; with ``follow``, as they are written until it exits."""
        sent = 0
        first = True
        while True:
            with self._cond:
                while True:
                    if self._stopping.is_set():
                        return
                    now = time.monotonic()
                    self._auto_remove(c, now)
                    written = c.lines_written(now)
                    if first and tail is not None:
                        sent = max(0, written - tail)
                    first = False
                    finished = not follow or c.exited(now) or c.removed
                    if written > sent or finished:
                        break
                    pause = c.next_change_in(now)
                    self._cond.wait(_MAX_SLEEP if pause is None else min(pause, _MAX_SLEEP))
                batch = [(c.line_time(i), *c.script.output[i]) for i in range(sent, written)]
                sent = written
            data = b"".join(
                self._frame(c, when, stream, line, timestamps) for when, stream, line in batch if stream in streams
            )
            if data:
                yield data
            if finished:
                return

    @staticmethod
    def _frame(c: _Container, when: float, stream: int, line: str, timestamps: bool) -> bytes:
        text = line if line.endswith("\n") else line + "\n"
        if timestamps and c.started_wall is not None and c.started_at is not None:
            text = _rfc3339(c.started_wall + (when - c.started_at)) + " " + text
        if c.tty:
            return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()  # the TTY's newline translation
        payload = text.encode()
        return struct.pack(">BxxxL", stream, len(payload)) + payload

    def _container_wait(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        condition = request.query.get("condition") or "not-running"
        if condition not in _WAIT_CONDITIONS:
            raise _ApiError(400, f"invalid condition: {condition!r}; expected one of {', '.join(_WAIT_CONDITIONS)}")
        while True:
            if self._stopping.is_set():
                raise _ApiError(503, "the stand-in is stopping")
            now = time.monotonic()
            self._auto_remove(container, now)
            if condition == "removed":
                done = container.removed
            elif condition == "next-exit":
                done = container.exited(now)
            else:
                done = not container.running(now)
            if done:
                break
            pause = container.next_change_in(now)
            self._cond.wait(_MAX_SLEEP if pause is None else min(pause, _MAX_SLEEP))
        now = time.monotonic()
        forced = container.forced_exit_code is not None
        error = container.script.error if container.exited(now) and not forced else ""
        return _json_answer(
            200, {"StatusCode": container.exit_code(now), "Error": {"Message": error} if error else None}
        )

    def _container_stop(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        container.stopped = True
        now = time.monotonic()
        if not container.running(now):
            return _no_content(304)
        container.end_now(now, KILLED_EXIT_CODE)  # as if it ignored SIGTERM and was killed after the grace time
        self._cond.notify_all()
        return _no_content()

    def _container_kill(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        signum = _signal_number(request.query.get("signal"))
        container.killed = True
        now = time.monotonic()
        if not container.running(now):
            raise _ApiError(409, f"Cannot kill container: {ref}: Container {container.id} is not running")
        container.end_now(now, 128 + signum)
        self._cond.notify_all()
        return _no_content()

    def _container_delete(self, request: DockerRequest, version: str, ref: str) -> _Answer:
        container = self._lookup(ref)
        now = time.monotonic()
        if container.running(now):
            if not _flag(request.query.get("force")):
                raise _ApiError(
                    409,
                    f"You cannot remove a running container {container.id}. "
                    "Stop the container before attempting removal or force the remove",
                )
            container.end_now(now, KILLED_EXIT_CODE)
        container.removed = True
        container.remove_query = dict(request.query)
        self._cond.notify_all()
        return _no_content()

    def _summary(self, c: _Container, now: float) -> dict[str, Any]:
        return {
            "id": c.id,
            "name": c.name,
            "image": c.image,
            "create": copy.deepcopy(c.body),
            "started": c.started_at is not None,
            "stopped": c.stopped,
            "killed": c.killed,
            "removed": c.removed,
            "auto_removed": c.auto_removed,
            "remove_query": copy.deepcopy(c.remove_query),
            "status": c.status(now),
            "exit_code": c.exit_code(now),
        }


def _pull_progress(key: str, already_present: bool) -> Iterator[bytes]:
    """The JSON progress lines of a pull, one object per line, as the engine streams them."""
    repository, tag = _split_reference(key)
    path = repository if "/" in repository else f"library/{repository}"
    digest = "sha256:" + hashlib.sha256(("digest " + key).encode()).hexdigest()
    messages: list[dict[str, Any]] = [{"status": f"Pulling from {path}", "id": tag}]
    if not already_present:
        layer = hashlib.sha256(("layer " + key).encode()).hexdigest()[:12]
        total = 3_145_728
        messages += [
            {"status": "Pulling fs layer", "progressDetail": {}, "id": layer},
            {
                "status": "Downloading",
                "progressDetail": {"current": total // 2, "total": total},
                "progress": "[=========================>                         ]  1.573MB/3.146MB",
                "id": layer,
            },
            {"status": "Download complete", "progressDetail": {}, "id": layer},
            {"status": "Extracting", "progressDetail": {"current": total, "total": total}, "id": layer},
            {"status": "Pull complete", "progressDetail": {}, "id": layer},
        ]
    messages.append({"status": f"Digest: {digest}"})
    verdict = "Image is up to date for" if already_present else "Downloaded newer image for"
    messages.append({"status": f"Status: {verdict} {key}"})
    for message in messages:
        yield (json.dumps(message) + "\r\n").encode()


def _as_list(value: Any) -> list[str]:
    """``Cmd`` / ``Entrypoint`` as a list: the API takes a string or a list of strings."""
    if not value:
        return []
    return [value] if isinstance(value, str) else list(value)


def _mount_points(host_config: dict[str, Any]) -> list[dict[str, Any]]:
    """The inspect document's ``Mounts``: from ``HostConfig.Mounts`` and ``HostConfig.Binds``."""
    points = []
    for mount in host_config.get("Mounts") or []:
        points.append(
            {
                "Type": mount.get("Type", "volume"),
                "Source": mount.get("Source") or "",
                "Destination": mount.get("Target", ""),
                "Mode": "",
                "RW": not mount.get("ReadOnly", False),
                "Propagation": "rprivate" if mount.get("Type") == "bind" else "",
            }
        )
    for bind in host_config.get("Binds") or []:
        source, _, rest = bind.partition(":")
        destination, _, mode = rest.partition(":")
        points.append(
            {
                "Type": "bind" if source.startswith("/") else "volume",
                "Source": source,
                "Destination": destination,
                "Mode": mode,
                "RW": "ro" not in mode.split(","),
                "Propagation": "rprivate",
            }
        )
    return points
