"""Exceptions raised by aml_airflow_provider.

They deliberately do not derive from ``AirflowException``: the authoring model (``core``, ``data``,
``pipeline``) must import without importing Airflow, because ``Workspace.from_config()`` may still
have to point ``AIRFLOW_HOME`` at the workspace's deployment before Airflow reads its configuration.
Airflow fails a task on any exception, so nothing is lost by this.

Errors in what the user wrote derive from :class:`UserErrorException`, which is also a
``ValueError`` (SDK v1 raised ``ValueError`` for most of them, and migrated code catches that).
"""

from __future__ import annotations


class AmlProviderError(Exception):
    """Base class of every error raised by this package."""

    @property
    def message(self) -> str:
        """The message (v1 exceptions had ``.message``; migrated ``except`` blocks read it)."""
        return str(self)


class UserErrorException(AmlProviderError, ValueError):
    """Something the user wrote or passed is invalid (SDK v1: ``azureml.exceptions.UserErrorException``)."""


class InvalidNameError(UserErrorException):
    """A step, port, parameter, datastore or workspace name breaks the naming rules."""


class StepDefinitionError(UserErrorException):
    """A step was built with arguments that contradict each other or v1's rules."""


class ScriptNotFoundError(StepDefinitionError):
    """A step's script does not exist in its source directory."""


class SnapshotTooLargeError(UserErrorException):
    """A step's source directory exceeds the snapshot size or file-count limit."""


class DataPathError(UserErrorException):
    """A path on a datastore is malformed or escapes the datastore root."""


class DatastoreNotFoundError(UserErrorException):
    """No datastore of that name is registered in the workspace."""


class PipelineValidationError(UserErrorException):
    """A pipeline's graph is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid pipeline:\n- " + "\n- ".join(self.problems))


class PipelineParameterError(UserErrorException):
    """A pipeline parameter is defined twice, unknown, or given a value of the wrong type."""


class WorkspaceException(AmlProviderError):
    """The workspace cannot be created, found or used (SDK v1: ``azureml.exceptions.WorkspaceException``)."""


class ComputeTargetException(AmlProviderError):
    """A compute target cannot be found or used (SDK v1: ``azureml.exceptions.ComputeTargetException``)."""


class DatastoreError(AmlProviderError):
    """A datastore operation (upload, download, commit) failed."""


class StepRunError(AmlProviderError):
    """A step ran and failed; the message names the step and carries the tail of its log."""


class RemoteServiceError(AmlProviderError):
    """A remote job service (Data Lake Analytics) refused a request or could not be reached.

    :param status_code: the HTTP status, if the service answered
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ActivityFailedException(AmlProviderError):
    """A pipeline run ended in ``Failed`` (SDK v1: raised by ``wait_for_completion(raise_on_error=True)``)."""


__all__ = [
    "ActivityFailedException",
    "AmlProviderError",
    "ComputeTargetException",
    "DataPathError",
    "DatastoreError",
    "DatastoreNotFoundError",
    "InvalidNameError",
    "PipelineParameterError",
    "PipelineValidationError",
    "RemoteServiceError",
    "ScriptNotFoundError",
    "SnapshotTooLargeError",
    "StepDefinitionError",
    "StepRunError",
    "UserErrorException",
    "WorkspaceException",
]
