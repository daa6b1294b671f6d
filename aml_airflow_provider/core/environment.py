"""``Environment`` (SDK v1 path): the software a step runs with."""

from __future__ import annotations

from typing import Any

from aml_airflow_provider.core.conda_dependencies import CondaDependencies
from aml_airflow_provider.core.databricks import DatabricksSection


class _PythonSection:
    def __init__(self) -> None:
        self.conda_dependencies = CondaDependencies()
        self.user_managed_dependencies = False
        self.interpreter_path = "python"


class _DockerSection:
    def __init__(self) -> None:
        self.enabled = False
        self.base_image: str | None = None


class Environment:
    """A named environment: Python packages, environment variables and (recorded only) a docker image.

    A step whose environment lists pip or conda packages runs in a virtualenv built for them on the
    worker (once per distinct set; see :mod:`aml_airflow_provider.runtime.virtualenv`), unless
    ``python.user_managed_dependencies`` is set: then ``python.interpreter_path`` runs it as is.

    :param name: the environment's name
    """

    def __init__(self, name: str = "default") -> None:
        self.name = name
        self.version: str | None = None
        self.python = _PythonSection()
        self.docker = _DockerSection()
        self.databricks = DatabricksSection()
        self.environment_variables: dict[str, str] = {}

    @staticmethod
    def from_pip_requirements(name: str, file_path: str) -> Environment:
        env = Environment(name)
        with open(file_path, encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line:
                    env.python.conda_dependencies.add_pip_package(line)
        return env

    def to_dict(self) -> dict[str, Any]:
        python = self.python
        document: dict[str, Any] = {
            "name": self.name,
            "dependencies": python.conda_dependencies.to_dict(),
            "docker_image": self.docker.base_image if self.docker.enabled else None,
        }
        if python.user_managed_dependencies:
            # v1: nothing is installed, and interpreter_path runs the script.
            document.update(user_managed=True, interpreter_path=python.interpreter_path)
        return document
