"""Per-environment virtualenvs on the worker, for steps whose environment asks for packages.

SDK v1 built a Docker image per distinct ``Environment``. Here a worker builds a virtualenv per
distinct set of requirements, once, under ``[aml] virtualenv_root`` (default
``$AIRFLOW_HOME/aml/virtualenvs``), and every step with the same requirements runs in it.

- The virtualenv is layered on the worker's own: a ``.pth`` file adds the worker's site-packages
  *after* its own, so the package (``aml_airflow_provider.core.Run``), Airflow and whatever the worker has stay
  importable, and a requirement pinned to another version wins. pip skips what the worker already
  satisfies, so a build installs only what is missing.
- It is named by a hash of the requirements and of the worker's Python, so a changed requirement or a
  new worker image gets a new virtualenv and an unchanged one is found again.
- Two tasks needing the same virtualenv at once on one worker (or on workers sharing the folder) do
  not both build it: the builder holds an exclusive lock on ``<hash>.lock``; the other waits, then
  finds it complete. A virtualenv counts as built only once its ``.complete`` marker exists; a build
  that died half-way is removed and done again by the next task.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import site
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import StepRunError

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete"
#: Lines of pip's output quoted when an install fails.
_PIP_TAIL = 30
_CONDA_ONLY = {"python", "pip", "setuptools", "wheel"}
_CONDA_SPEC = re.compile(r"^(?:[\w.-]+::)?([A-Za-z0-9][\w.-]*)\s*(.*)$")


@dataclass(frozen=True)
class Virtualenv:
    """A ready virtualenv.

    :param path: its folder
    :param python: its interpreter
    :param built: True if this call built it, False if it was there already
    :param seconds: how long getting it took (building, or waiting for another task's build)
    """

    path: Path
    python: Path
    built: bool
    seconds: float


def requirements_of(environment: Mapping[str, Any]) -> list[str]:
    """The pip requirements of a step's environment (as the spec records it), sorted and deduplicated.

    Conda packages become pip requirements (``numpy=1.26`` -> ``numpy==1.26``, a channel prefix
    dropped); ``python``, ``pip``, ``setuptools`` and ``wheel`` are the worker's own and are skipped.

    :param environment: the ``environment`` of a step's spec (``dependencies.pip``/``dependencies.conda``)
    """
    dependencies = environment.get("dependencies") or {}
    found = [str(p).strip() for p in dependencies.get("pip") or () if str(p).strip()]
    for spec in dependencies.get("conda") or ():
        requirement = conda_to_pip(str(spec))
        if requirement:
            found.append(requirement)
    return sorted(set(found))


def conda_to_pip(spec: str) -> str | None:
    """A conda package spec as a pip requirement, or None for the interpreter's own packages."""
    match = _CONDA_SPEC.match(spec.strip())
    if not match:
        return None
    name, version = match.group(1), match.group(2).strip()
    if name.lower() in _CONDA_ONLY:
        return None
    if version and version[0].isdigit():
        version = f"=={version}" if "*" not in version else f"=={version.rstrip('.*')}.*"
    elif version.startswith("=") and not version.startswith("=="):
        version = f"={version}"
    return f"{name}{version}"


def shown(requirements: Iterable[str]) -> str:
    """Requirements as logs and errors show them: a private index's credentials in a URL are masked."""
    return redact(", ".join(requirements))


def environment_key(requirements: Iterable[str]) -> str:
    """The folder name of the virtualenv for ``requirements`` on this worker's Python."""
    identity = {
        "requirements": sorted(requirements),
        "python": sys.version,
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def default_root() -> Path:
    """``[aml] virtualenv_root``, else ``$AIRFLOW_HOME/aml/virtualenvs``."""
    from airflow.configuration import conf

    configured = conf.get("aml", "virtualenv_root", fallback=None)
    if configured:
        return Path(configured).expanduser()
    return Path(conf.get("core", "airflow_home", fallback=os.environ.get("AIRFLOW_HOME", "~/airflow"))).expanduser() / (
        "aml/virtualenvs"
    )


def ensure_virtualenv(requirements: Iterable[str], root: Path, *, where: str = "Step") -> Virtualenv:
    """Return the virtualenv for ``requirements`` under ``root``, building it first if needed.

    :param requirements: pip requirements (see :func:`requirements_of`)
    :param root: the folder holding the virtualenvs
    :param where: names the step in messages
    :raises StepRunError: the virtualenv could not be created or pip could not install a requirement
        (the message quotes the end of pip's output)
    """
    requirements = sorted(set(requirements))
    started = time.monotonic()
    key = environment_key(requirements)
    path = Path(root) / key
    python = path / "bin" / "python"
    if (path / COMPLETE_MARKER).exists():
        return Virtualenv(path, python, False, time.monotonic() - started)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f"{key}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another task building it: wait, then find it complete
        if (path / COMPLETE_MARKER).exists():
            return Virtualenv(path, python, False, time.monotonic() - started)
        if path.exists():
            log.warning("Removing the incomplete virtualenv %s (an earlier build stopped half-way)", path)
            shutil.rmtree(path)
        log.info("%s: building a virtualenv for %s in %s", where, shown(requirements) or "no packages", path)
        _build(path, requirements, where)
        (path / COMPLETE_MARKER).write_text(json.dumps({"requirements": requirements}) + "\n")
    seconds = time.monotonic() - started
    log.info("%s: virtualenv %s built in %.1f s", where, path, seconds)
    return Virtualenv(path, python, True, seconds)


def _build(path: Path, requirements: list[str], where: str) -> None:
    # No pip of its own (ensurepip costs seconds): the worker's pip installs into it with --python.
    _run([sys.executable, "-m", "venv", "--without-pip", str(path)], where, "create the virtualenv")
    python = str(path / "bin" / "python")
    # Asked of the new interpreter itself: distributions patch the install schemes.
    purelib = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], where, "inspect"))
    purelib.mkdir(parents=True, exist_ok=True)
    # addsitedir (not a bare path) so the worker's own .pth files (editable installs) are read too.
    lines = [f"import site; site.addsitedir({d!r})" for d in _worker_site_dirs()]
    (purelib / "_aml_worker_site.pth").write_text("\n".join(lines) + "\n")
    if requirements:
        pip = [sys.executable, "-m", "pip", "--python", python, "install"]
        pip += ["--disable-pip-version-check", "--no-input", "--progress-bar", "off", *requirements]
        _run(pip, where, f"install {shown(requirements)}")


def _worker_site_dirs() -> list[str]:
    dirs = [*site.getsitepackages(), site.getusersitepackages() if site.ENABLE_USER_SITE else None]
    return [d for d in dict.fromkeys(dirs) if d and os.path.isdir(d)]


def _run(argv: list[str], where: str, what: str) -> str:
    """Run a build command; return its stdout (stripped), or raise with the end of its output."""
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return result.stdout.strip()
    tail = redact("\n".join((result.stdout + result.stderr).strip().splitlines()[-_PIP_TAIL:]))
    raise StepRunError(
        f"{where}: could not {what} for its environment (exit code {result.returncode}). Check the package "
        f"names and versions in its CondaDependencies/Environment, and that the worker can reach the package "
        f"index. End of the output:\n{tail}"
    )
