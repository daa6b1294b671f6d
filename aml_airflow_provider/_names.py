"""Naming and path rules shared by the model, the spec and the runtime."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePosixPath
from typing import Any

from aml_airflow_provider.exceptions import DataPathError, InvalidNameError, UserErrorException

#: Port names become the suffix of ``AZUREML_DATAREFERENCE_<name>``: v1's ``\w+``, kept to ASCII so
#: the environment variable is portable.
PORT_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
PARAMETER_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,254}$")
DATASTORE_NAME_RE = re.compile(r"^[A-Za-z0-9_]{1,255}$")
WORKSPACE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{1,32}$")
EXPERIMENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")
_TASK_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_STEP_NAME = 255
MAX_PATH = 1024


def _check(value: object, pattern: re.Pattern[str], what: str, rule: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidNameError(f"Invalid {what} {value!r}: {rule}.")
    return value


def check_port_name(name: object, what: str = "port name") -> str:
    """Return ``name`` if it is a valid input/output port name, else raise :class:`InvalidNameError`."""
    return _check(name, PORT_NAME_RE, what, "use 1-255 ASCII letters, digits or underscores")


def check_parameter_name(name: object) -> str:
    return _check(
        name,
        PARAMETER_NAME_RE,
        "pipeline parameter name",
        "use ASCII letters, digits, '_', '.' or '-', starting with a letter, digit or '_'",
    )


def check_datastore_name(name: object) -> str:
    return _check(name, DATASTORE_NAME_RE, "datastore name", "use 1-255 ASCII letters, digits or underscores")


def check_workspace_name(name: object) -> str:
    return _check(
        name,
        WORKSPACE_NAME_RE,
        "workspace name",
        "use 2-33 ASCII letters, digits, '_' or '-', starting with a letter or digit",
    )


def check_experiment_name(name: object) -> str:
    return _check(
        name,
        EXPERIMENT_NAME_RE,
        "experiment name",
        "use 1-200 ASCII letters, digits, '_', '.' or '-', starting with a letter or digit",
    )


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a control or format character (NUL, newline, tab, zero-width, bidi overrides...)."""
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def check_description(value: object, what: str) -> str | None:
    """A description: any text but NUL bytes, which PostgreSQL (Airflow's usual database) refuses to store.

    :param what: the object it describes, for the message
    :raises UserErrorException: ``value`` is not text, or holds a NUL byte
    """
    if value is not None and (not isinstance(value, str) or "\x00" in value):
        raise UserErrorException(f"{what}: the description {value!r} must be text without NUL bytes.")
    return value


def check_step_name(name: object) -> str:
    """Step names are display names (any language), but not empty, huge, or with control characters."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidNameError(f"Invalid step name {name!r}: give a non-empty string.")
    if len(name) > MAX_STEP_NAME:
        raise InvalidNameError(f"Invalid step name {name[:40]!r}...: longer than {MAX_STEP_NAME} characters.")
    if has_control_characters(name):
        raise InvalidNameError(f"Invalid step name {name!r}: it contains control characters.")
    return name


def parameter_env_name(name: str) -> str:
    """``AML_PARAMETER_<name>`` with every non-word character replaced by ``_`` (as v1)."""
    return "AML_PARAMETER_" + re.sub(r"\W", "_", name, flags=re.ASCII)


def data_env_name(port_name: str) -> str:
    return "AZUREML_DATAREFERENCE_" + port_name


def task_id_for(step_name: str) -> str:
    """A readable Airflow task id for a step name (uniqueness is the translator's job)."""
    task_id = _TASK_ID_UNSAFE.sub("_", step_name).strip("_.-")[:200]
    if not task_id:
        # A name in a non-Latin script: keep it stable and unique by hashing it.
        task_id = "step_" + hashlib.sha1(step_name.encode()).hexdigest()[:10]
    return task_id


def normalize_datastore_path(path: object, *, what: str = "path_on_datastore") -> str:
    """Normalise a path on a datastore to ``a/b/c`` ('' is the root); reject what escapes the root."""
    if path is None:
        return ""
    if not isinstance(path, str):
        raise DataPathError(f"Invalid {what} {path!r}: give a string.")
    if "\x00" in path:
        raise DataPathError(f"Invalid {what} {path!r}: it contains a NUL byte.")
    if "\\" in path:
        raise DataPathError(f"Invalid {what} {path!r}: use '/' to separate folders, not '\\'.")
    if len(path) > MAX_PATH:
        raise DataPathError(f"Invalid {what} {path[:40]!r}...: longer than {MAX_PATH} characters.")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataPathError(
            f"Invalid {what} {path!r}: '..' would leave the datastore root; give a path inside the datastore."
        )
    return "/".join(parts)


def check_compute_path(path: Any, what: str) -> Any:
    """Return ``path`` if it is a path relative to a step's working directory, else raise :class:`DataPathError`.

    Checked when the pipeline is built (naming the port) and again by the runtime, for tasks of
    hand-written DAGs (:func:`~aml_airflow_provider.runtime.data.local_subpath`).

    :param what: the argument and the object it belongs to, for the message
    """
    if path is None or path == "":
        return path  # the working directory itself (the runtime's default)
    if not isinstance(path, str):
        raise DataPathError(f"{what}: {path!r} must be a relative path inside the step's working directory.")
    if "\x00" in path:
        raise DataPathError(f"{what}: {path!r} contains a NUL byte.")
    if len(path) > MAX_PATH:
        raise DataPathError(f"{what}: {path[:40]!r}... is longer than {MAX_PATH} characters.")
    parts = PurePosixPath(path.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts:
        raise DataPathError(
            f"{what}: {path!r} must be a relative path inside the step's working directory, without '..' "
            "(a step may only read and write inside its own folder)."
        )
    return path
