"""Compute targets (SDK v1 path).

This release runs every step on the Airflow worker that picks up its task (``LocalCompute``, or
``compute_target=None``). The other v1 compute classes are importable so migrated scripts load;
creating or attaching one raises :class:`ComputeTargetException` saying what to use instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aml_airflow_provider.deployment.base import compute_conn_id
from aml_airflow_provider.exceptions import ComputeTargetException

if TYPE_CHECKING:
    from aml_airflow_provider.core.workspace import Workspace

LOCAL_COMPUTE_NAME = "local"


class ComputeTarget:
    """A registered compute target: ``ComputeTarget(workspace=ws, name=...)`` finds it or raises.

    :param workspace: the workspace
    :param name: the compute target's name
    """

    type = "Abstract"

    def __init__(self, workspace: Workspace, name: str) -> None:
        self.workspace = workspace
        self.name = name
        if name == LOCAL_COMPUTE_NAME:
            return
        if workspace._deployment.get_connection(compute_conn_id(workspace.name, name)) is None:
            raise ComputeTargetException(
                f"ComputeTargetNotFound: compute target '{name}' not found in workspace '{workspace.name}'."
            )

    @staticmethod
    def create(workspace: Workspace, name: str, provisioning_configuration: Any) -> ComputeTarget:
        raise ComputeTargetException(
            f"Cannot create compute target '{name}': provisioned clusters are not supported by this release. "
            "Leave compute_target=None (or use LocalCompute) to run steps on the Airflow workers."
        )

    @staticmethod
    def attach(workspace: Workspace, name: str, attach_configuration: Any) -> ComputeTarget:
        raise ComputeTargetException(
            f"Cannot attach compute target '{name}': attached computes are not supported by this release."
        )

    def wait_for_completion(self, show_output: bool = False, *args: Any, **kwargs: Any) -> None:
        """Nothing to wait for: a registered target is ready."""

    def get_status(self) -> str:
        return "Succeeded"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class LocalCompute(ComputeTarget):
    """Run the step as a subprocess of the Airflow worker, in the worker's Python.

    :param workspace: optional, for symmetry with other targets
    :param name: always ``local``
    """

    type = "Local"

    def __init__(self, workspace: Workspace | None = None, name: str = LOCAL_COMPUTE_NAME) -> None:
        self.workspace = workspace  # type: ignore[assignment]
        self.name = LOCAL_COMPUTE_NAME


class _Unsupported(ComputeTarget):
    @classmethod
    def provisioning_configuration(cls, *args: Any, **kwargs: Any) -> Any:
        raise ComputeTargetException(
            f"{cls.__name__} is not supported by this release; leave compute_target=None to run on Airflow workers."
        )

    attach_configuration = provisioning_configuration


class AmlCompute(_Unsupported):
    """An AML cluster (not supported yet)."""

    type = "AmlCompute"


class DatabricksCompute(_Unsupported):
    """An attached Databricks workspace (not supported yet)."""

    type = "Databricks"


class AdlaCompute(_Unsupported):
    """An attached Data Lake Analytics account (not supported yet)."""

    type = "ADLAnalytics"


class DataFactoryCompute(_Unsupported):
    """An attached Data Factory (not supported yet)."""

    type = "DataFactory"


class DockerCompute(_Unsupported):
    """Run in a Docker container (not supported yet)."""

    type = "Docker"


def compute_name(target: object, where: str) -> str | None:
    """The name a step records for its ``compute_target`` argument (``None`` means the worker)."""
    if target is None:
        return None
    if isinstance(target, ComputeTarget):
        return target.name
    if isinstance(target, str):
        return target
    if isinstance(target, tuple) and len(target) == 2 and isinstance(target[0], str):
        return target[0]
    raise ComputeTargetException(
        f"{where}: compute_target must be a ComputeTarget, a compute name or None, not {type(target).__name__}."
    )


__all__ = [
    "AdlaCompute",
    "AmlCompute",
    "ComputeTarget",
    "DataFactoryCompute",
    "DatabricksCompute",
    "DockerCompute",
    "LocalCompute",
]
