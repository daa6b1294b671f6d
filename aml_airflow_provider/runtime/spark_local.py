"""Commands and environment for running a Databricks step's script or notebook on local Spark (``pyspark``)."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from aml_airflow_provider.exceptions import StepRunError

log = logging.getLogger(__name__)

#: Settings for a quick, quiet local session that listens on the loopback interface only.
SPARK_DEFAULT_CONF: dict[str, str] = {
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    # The default (200) makes every small shuffle on a laptop-sized data set schedule 200 tasks.
    "spark.sql.shuffle.partitions": "4",
    # Spark >= 3.5 applies this when the context starts; only a few start-up lines come before it.
    "spark.log.level": "WARN",
}

#: The program spark-submit executes for a notebook (see :func:`notebook_command`).
NOTEBOOK_RUNNER = str(Path(__file__).with_name("notebook_runner.py").resolve())

#: The first line of a notebook exported in Databricks SOURCE format.
NOTEBOOK_HEADER = "# Databricks notebook source"

#: Where Databricks clusters keep Python; ``spark_env_variables`` carry it by default.
DATABRICKS_PYTHON = "/databricks/python3/bin/python3"

_MISSING_PYSPARK = "local Spark needs pyspark: pip install 'aml-airflow-provider[spark]'"

# spark_env_variables entries that name things on the cluster, replaced by this machine's.
_CLUSTER_ONLY_VARIABLES = ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON", "SPARK_HOME")


def spark_submit_executable() -> str:
    """Path of ``bin/spark-submit`` inside the installed ``pyspark`` package (``PATH`` is not searched).

    :raises StepRunError: if pyspark is not installed, or its ``spark-submit`` is missing
    """
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.submodule_search_locations:
        raise StepRunError(_MISSING_PYSPARK)
    name = "spark-submit.cmd" if os.name == "nt" else "spark-submit"
    executable = Path(next(iter(spec.submodule_search_locations))) / "bin" / name
    if not executable.is_file():
        raise StepRunError(f"{_MISSING_PYSPARK} (the installed pyspark has no {executable})")
    return str(executable)


def _conf_arguments(conf: Mapping[str, str] | None) -> list[str]:
    merged = {**SPARK_DEFAULT_CONF, **{str(k): str(v) for k, v in (conf or {}).items()}}
    arguments: list[str] = []
    for key, value in merged.items():
        arguments += ["--conf", f"{key}={value}"]
    return arguments


def script_command(
    script: str,
    arguments: Sequence[str],
    *,
    conf: Mapping[str, str] | None = None,
    master: str = "local[*]",
) -> list[str]:
    """The spark-submit command that runs a Python script on local Spark.

    :param script: the script, as spark-submit will find it from the process's working directory
    :param arguments: the script's arguments, passed unchanged
    :param conf: Spark settings; they win over :data:`SPARK_DEFAULT_CONF`
    :param master: the Spark master
    :return: ``[spark-submit, "--master", master, "--conf", "k=v", ..., script, *arguments]``
    """
    return [spark_submit_executable(), "--master", master, *_conf_arguments(conf), script, *arguments]


def _widget_text(name: str, value: object) -> str:
    # Databricks notebook parameters are strings; numbers and booleans arrive written the way its JSON API writes them.
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TypeError(f"notebook parameter {name!r} must be a string, not {type(value).__name__}")


def notebook_command(
    notebook: str,
    widgets: Mapping[str, str],
    exit_file: str,
    *,
    conf: Mapping[str, str] | None = None,
    master: str = "local[*]",
) -> list[str]:
    """The spark-submit command that runs a Databricks SOURCE-format notebook on local Spark.

    The command ends with ``notebook_runner.py NOTEBOOK EXIT_FILE WIDGETS``: ``WIDGETS`` is one JSON object
    written in ASCII only (``ensure_ascii``), so every value (spaces, quotes, ``=``, newlines, any Unicode)
    reaches the notebook exactly, whatever the locale the JVM decodes its arguments with.

    :param notebook: the notebook, as the process will find it from its working directory
    :param widgets: the notebook parameters (``dbutils.widgets`` values)
    :param exit_file: where the value given to ``dbutils.notebook.exit`` is written (made absolute here, so
        :func:`read_exit_value` reads the same file); use a fresh path for each attempt
    :param conf: Spark settings; they win over :data:`SPARK_DEFAULT_CONF`
    :param master: the Spark master
    """
    values = {str(name): _widget_text(str(name), value) for name, value in widgets.items()}
    return [
        spark_submit_executable(),
        "--master",
        master,
        *_conf_arguments(conf),
        NOTEBOOK_RUNNER,
        notebook,
        os.path.abspath(exit_file),
        json.dumps(values, ensure_ascii=True),
    ]


def _find_java_home(path: str | None) -> str | None:
    java = shutil.which("java", path=path)
    candidates = [Path(java).resolve().parent.parent] if java else []
    candidates.append(Path("/usr/lib/jvm/default-java"))
    for home in candidates:
        if (home / "bin" / "java").is_file():
            return str(home)
    return None


def spark_environment(
    base: Mapping[str, str],
    spark_env_variables: Mapping[str, str] | None = None,
    python: str | None = None,
) -> dict[str, str]:
    """The environment for a local spark-submit.

    Both ``PYSPARK_PYTHON`` and ``PYSPARK_DRIVER_PYTHON`` are this worker's interpreter: the cluster's
    (``/databricks/python3/bin/python3`` by default) does not exist here, and the driver must be able to
    import the pyspark whose spark-submit runs. ``SPARK_HOME`` is removed, so spark-submit uses its own
    pyspark rather than another Spark installation.

    :param base: the environment to start from (usually ``os.environ``)
    :param spark_env_variables: the step's ``spark_env_variables``; the Python and ``SPARK_HOME`` entries
        are ignored locally, ``JAVA_HOME`` only if it is a directory here, the others are kept
    :param python: the interpreter for the driver and the Python workers (default: ``sys.executable``)
    """
    env = {k: v for k, v in base.items() if k != "SPARK_HOME"}
    for key, value in (spark_env_variables or {}).items():
        if key in _CLUSTER_ONLY_VARIABLES or (key == "JAVA_HOME" and not Path(value).is_dir()):
            if value != DATABRICKS_PYTHON:
                log.info("Local Spark ignores %s=%s from spark_env_variables (a setting of the cluster)", key, value)
            continue
        env[key] = str(value)
    interpreter = python or sys.executable or "python3"
    env["PYSPARK_PYTHON"] = interpreter
    env["PYSPARK_DRIVER_PYTHON"] = interpreter
    env["SPARK_LOCAL_IP"] = "127.0.0.1"
    if not env.get("JAVA_HOME"):
        java_home = _find_java_home(env.get("PATH"))
        if java_home:
            env["JAVA_HOME"] = java_home
    if not any(env.get(name) for name in ("LC_ALL", "LC_CTYPE", "LANG")):
        # Without a locale the JVM turns every non-ASCII character of the script's arguments into '?'.
        env["LANG"] = "C.UTF-8"
    # The launcher streams the output line by line; a buffered driver would hold it back until it ends.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def read_exit_value(exit_file: str | os.PathLike[str]) -> str | None:
    """The value the notebook passed to ``dbutils.notebook.exit``.

    :param exit_file: the ``exit_file`` given to :func:`notebook_command`
    :return: the value exactly as ``str(value)`` gave it, or None if the notebook did not call it
    """
    try:
        with open(exit_file, encoding="utf-8", newline="") as f:
            return f.read()
    except FileNotFoundError:
        return None


def is_notebook_source(path: str | os.PathLike[str]) -> bool:
    """Whether a file is a notebook exported in Databricks SOURCE format.

    :param path: the file
    :return: True when it starts with ``# Databricks notebook source`` (False if it is not a file)
    """
    try:
        with open(path, "rb") as f:
            start = f.read(len(NOTEBOOK_HEADER.encode()) + 3)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return False
    return start.decode("utf-8", errors="replace").removeprefix("\ufeff").startswith(NOTEBOOK_HEADER)
