"""Running a step's script in a Docker container, through ``apache-airflow-providers-docker``.

SDK v1 ran a step in a Docker image built from its ``RunConfiguration``. Here a step whose
environment has ``docker.enabled`` (or whose compute is a ``DockerCompute``) runs its script in a
container of the image, on the Docker engine the ``DockerHook`` reaches:

- the step's working copy of its source, its input and output folders and its tracking folder are
  bind-mounted at the **same paths** as on the worker (inputs read-only), so the arguments and
  ``AZUREML_DATAREFERENCE_*`` variables the script gets need no rewriting, and outputs land where
  the worker publishes them from (only after the script succeeds, as on the worker);
- the v1 environment contract is set (not the worker's own environment);
- it runs as the worker's user and group, so what it writes stays the worker's to publish and clean;
- memory, CPUs, shared memory and network come from the compute; pip requirements are installed in
  the container before the script starts (no shell: every argument stays one literal argument);
- its output streams into the task log and the driver log; the container is removed afterwards,
  whatever happened, and stopped when the task is killed or the run fails elsewhere.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.runtime.launcher import OutputLines, ProcessResult

log = logging.getLogger(__name__)

DEFAULT_DOCKER_URL = "unix://var/run/docker.sock"
#: Entry point written next to the script: installs the requirements, then runs the script as ``__main__``.
ENTRY_POINT = ".aml_container_entry.py"
_ENTRY_SOURCE = '''"""Written by aml_airflow_provider: install the step's requirements, then run its script."""
import json, os, runpy, subprocess, sys

requirements = json.loads(os.environ.pop("AML_PIP_REQUIREMENTS", "[]"))
if requirements:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check",
                    "--progress-bar", "off", *requirements], check=True)
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name="__main__")
'''


@dataclass(frozen=True)
class BindMount:
    """A worker folder seen in the container at the same path."""

    path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    """What is asked of the Docker engine for one step.

    :param image: the image
    :param command: the container's command, exec form (no shell)
    :param environment: its environment variables
    :param working_dir: its working directory
    :param mounts: worker folders mounted at the same path
    :param name: the container's name
    :param labels: labels saying which step and run it belongs to
    :param user: ``uid:gid`` it runs as
    :param mem_limit: e.g. ``"4g"``
    :param cpus: CPUs it may use (fractions allowed)
    :param shm_size: size of ``/dev/shm``, e.g. ``"2g"``
    :param network_mode: e.g. ``"bridge"``, ``"none"``, ``"host"``
    """

    image: str
    command: tuple[str, ...]
    environment: Mapping[str, str]
    working_dir: str
    mounts: tuple[BindMount, ...]
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    mem_limit: str | None = None
    cpus: float | None = None
    shm_size: str | None = None
    network_mode: str | None = None


@dataclass(frozen=True)
class DockerSettings:
    """Where and how a step's containers run: a ``DockerCompute`` registration, or the defaults.

    :param docker_url: the engine (``unix://...`` or ``tcp://host:port``)
    :param docker_conn_id: an Airflow ``docker`` connection (registry login, TLS), optional
    :param image: the image when the environment names none
    :param api_version: the engine API version (``auto`` asks the engine)
    """

    docker_url: str = DEFAULT_DOCKER_URL
    docker_conn_id: str | None = None
    image: str | None = None
    mem_limit: str | None = None
    cpus: float | None = None
    shm_size: str | None = None
    network_mode: str | None = None
    api_version: str = "auto"

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any] | None) -> DockerSettings:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in dict(settings or {}).items() if k in known and v is not None})


def write_entry_point(script_dir: Path) -> Path:
    """Write :data:`ENTRY_POINT` into the step's working copy; return its path."""
    path = script_dir / ENTRY_POINT
    path.write_text(_ENTRY_SOURCE, encoding="utf-8")
    return path


def container_spec(
    *,
    image: str,
    script_dir: Path,
    script: str,
    arguments: Sequence[str],
    environment: Mapping[str, str],
    requirements: Sequence[str],
    read_only: Iterable[str],
    writable: Iterable[str],
    settings: DockerSettings,
    labels: Mapping[str, str],
) -> ContainerSpec:
    """The container of one step run (see the module docstring).

    :param image: the image to run
    :param script_dir: the step's working copy of its source (the working directory)
    :param script: the script, relative to ``script_dir``
    :param arguments: the script's arguments, already expanded
    :param environment: the v1 contract and the step's variables
    :param requirements: pip requirements to install first
    :param read_only: worker paths the script reads (inputs)
    :param writable: worker paths the script writes (outputs, tracking)
    :param settings: the compute's resource settings
    :param labels: which step and run the container belongs to
    """
    mounts: dict[str, BindMount] = {str(script_dir): BindMount(str(script_dir))}
    for path in writable:
        mounts.setdefault(_folder(path), BindMount(_folder(path)))
    for path in read_only:
        mounts.setdefault(_folder(path), BindMount(_folder(path), read_only=True))
    env = dict(environment)
    env["AML_PIP_REQUIREMENTS"] = json.dumps(list(requirements))
    return ContainerSpec(
        image=image,
        command=("python", ENTRY_POINT, script, *arguments),
        environment=env,
        working_dir=str(script_dir),
        mounts=tuple(sorted(mounts.values(), key=lambda m: m.path)),
        name=f"aml-{uuid.uuid4().hex[:12]}",
        labels=dict(labels),
        user=f"{os.getuid()}:{os.getgid()}",
        mem_limit=settings.mem_limit,
        cpus=settings.cpus,
        shm_size=settings.shm_size,
        network_mode=settings.network_mode,
    )


def _folder(path: str) -> str:
    """The folder to mount for ``path``: a file's folder (Docker would make a missing file path a folder),
    or the folder a script is yet to create (v1 scripts create their output folder themselves)."""
    target = Path(path)
    if target.is_dir():
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return str(target.parent)


class ContainerProcess:
    """One step container: created, started, followed, waited for and removed. Same interface as
    :class:`~aml_airflow_provider.runtime.launcher.StepProcess`.

    :param spec: what to run
    :param settings: which engine
    :param log: where each line of output goes
    :param driver_log: a file that also receives every line
    """

    #: The error tail quotes the container's output: Docker's log stream mixes stdout and stderr.
    tail_stdout = True

    def __init__(
        self, spec: ContainerSpec, settings: DockerSettings, log: logging.Logger, driver_log: Path | None = None
    ) -> None:
        self.spec, self.settings, self.log, self.driver_log = spec, settings, log, driver_log
        self._client: Any = None
        self._container: str | None = None
        self._stopping = threading.Event()

    def client(self) -> Any:
        """The ``docker.APIClient`` of the provider's ``DockerHook`` (made on first use)."""
        if self._client is None:
            from airflow.providers.docker.hooks.docker import DockerHook

            hook = DockerHook(
                docker_conn_id=self.settings.docker_conn_id,
                base_url=self.settings.docker_url,
                version=self.settings.api_version,
            )
            self._client = hook.api_client
        return self._client

    def run(self, should_stop: Callable[[], str | None] | None = None, poll_seconds: float = 2.0) -> ProcessResult:
        """Run the container to its end (or until ``should_stop`` gives a reason); return how it ended."""
        from docker.errors import DockerException

        client = self.client()
        lines = OutputLines(self.log, self.driver_log)
        stopped: list[str] = []
        try:
            write_entry_point(Path(self.spec.working_dir))
            self._pull_if_missing(client)
            self._container = client.create_container(**self._create_arguments(client))["Id"]
            self.log.info("Starting container %s of image %s", self.spec.name, self.spec.image)
            client.start(self._container)
            watcher = threading.Thread(
                target=self._watch, args=(should_stop, poll_seconds, stopped), name="aml-container-watch", daemon=True
            )
            watcher.start()
            self._follow(client, lines)
            returncode = int(client.wait(self._container).get("StatusCode", -1))
            self._stopping.set()
            watcher.join()
        except DockerException as exc:
            raise StepRunError(redact(f"Docker engine at {self.settings.docker_url}: {exc}")) from None
        finally:
            self._stopping.set()
            lines.close()
            self._remove(client)
        return ProcessResult(returncode, list(lines.tail), stopped[0] if stopped else None)

    def terminate(self, grace_seconds: float = 10.0) -> None:
        """Stop the container (SIGTERM, then SIGKILL after ``grace_seconds``)."""
        if self._container is not None and self._client is not None:
            from docker.errors import DockerException

            try:
                self._client.stop(self._container, timeout=int(grace_seconds))
            except DockerException as exc:
                log.warning("Could not stop container %s: %s", self.spec.name, exc)

    # -- steps of run() -------------------------------------------------------------------------
    def _pull_if_missing(self, client: Any) -> None:
        from docker.errors import ImageNotFound, NotFound

        try:
            client.inspect_image(self.spec.image)
        except (ImageNotFound, NotFound):
            from docker.utils import parse_repository_tag

            self.log.info("Pulling image %s", self.spec.image)
            repository, tag = parse_repository_tag(self.spec.image)
            for _ in client.pull(repository, tag=tag or "latest", stream=True, decode=True):
                pass  # progress lines; a failed pull raises

    def _create_arguments(self, client: Any) -> dict[str, Any]:
        from docker.types import Mount

        spec = self.spec
        host_config = client.create_host_config(
            mounts=[Mount(target=m.path, source=m.path, type="bind", read_only=m.read_only) for m in spec.mounts],
            mem_limit=spec.mem_limit,
            nano_cpus=int(spec.cpus * 1_000_000_000) if spec.cpus else None,
            shm_size=spec.shm_size,
            network_mode=spec.network_mode,
            auto_remove=False,  # removed by us after its exit code and logs are read
        )
        return {
            "image": spec.image,
            "command": list(spec.command),
            "environment": dict(spec.environment),
            "working_dir": spec.working_dir,
            "user": spec.user,
            "name": spec.name,
            "labels": dict(spec.labels),
            "host_config": host_config,
            "tty": False,
            "stdin_open": False,
        }

    def _follow(self, client: Any, lines: OutputLines) -> None:
        buffered = ""
        for chunk in client.logs(self._container, stream=True, follow=True, stdout=True, stderr=True):
            buffered += chunk.decode("utf-8", errors="replace")
            *complete, buffered = buffered.split("\n")
            for line in complete:
                lines.emit(line.rstrip("\r"))
        if buffered:
            lines.emit(buffered)

    def _watch(self, should_stop: Callable[[], str | None] | None, poll_seconds: float, stopped: list[str]) -> None:
        while should_stop is not None and not self._stopping.wait(poll_seconds):
            reason = should_stop()
            if reason:
                self.log.warning("Stopping the step's container: %s", reason)
                stopped.append(reason)
                self.terminate()
                return

    def _remove(self, client: Any) -> None:
        if self._container is None:
            return
        from docker.errors import DockerException

        try:
            client.remove_container(self._container, force=True)
        except DockerException as exc:
            log.warning("Could not remove container %s: %s", self.spec.name, exc)
