"""``RunConfiguration`` (SDK v1 path): how a step's process is set up."""

from __future__ import annotations

from typing import Any

from aml_airflow_provider.core.environment import Environment

DEFAULT_CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
DEFAULT_GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04"


class RunConfiguration:
    """Run settings of a step.

    Honoured here: ``environment_variables`` (set for the script, as are
    ``environment.environment_variables``) and ``target``. The environment's packages and docker
    settings are recorded in the spec; the step runs in the worker's Python.

    :param script: accepted for v1 compatibility
    :param arguments: accepted for v1 compatibility
    :param framework: ``Python`` (the only framework here)
    :param conda_dependencies: shortcut for ``environment.python.conda_dependencies``
    """

    def __init__(
        self,
        script: str | None = None,
        arguments: list[Any] | None = None,
        framework: str | None = None,
        communicator: str | None = None,
        conda_dependencies: Any = None,
        _history_enabled: Any = None,
        _path: Any = None,
        _name: str | None = None,
        command: Any = None,
    ) -> None:
        self.script = script
        self.arguments = list(arguments or [])
        self.framework = framework or "Python"
        self.communicator = communicator or "None"
        self.target = "local"
        self.node_count = 1
        self.environment = Environment()
        if conda_dependencies is not None:
            self.environment.python.conda_dependencies = conda_dependencies
        self.environment_variables: dict[str, str] = {}

    @property
    def docker(self):  # v1 exposed the environment's docker section here too
        return self.environment.docker

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment.to_dict(),
            "environment_variables": {
                **self.environment.environment_variables,
                **{str(k): str(v) for k, v in self.environment_variables.items()},
            },
        }


__all__ = ["DEFAULT_CPU_IMAGE", "DEFAULT_GPU_IMAGE", "RunConfiguration"]
