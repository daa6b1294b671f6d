"""``PythonScriptStep``: run a Python script with v1's argument and environment contract."""

from __future__ import annotations

import os
import warnings
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.core.compute import compute_name
from aml_airflow_provider.core.runconfig import RunConfiguration
from aml_airflow_provider.exceptions import ScriptNotFoundError, StepDefinitionError
from aml_airflow_provider.pipeline.core.builder import PipelineStep, StepContext

if TYPE_CHECKING:
    from aml_airflow_provider.spec import StepSpec


def _check_script_name(script_name: object, step: str) -> str:
    if not isinstance(script_name, str) or not script_name.strip():
        raise StepDefinitionError(f"Step '{step}': script_name must be a non-empty string.")
    path = PurePosixPath(script_name.replace(os.sep, "/"))
    if path.is_absolute() or ".." in path.parts or "\x00" in script_name:
        raise StepDefinitionError(
            f"Step '{step}': script_name {script_name!r} must be a path inside source_directory "
            "(relative, without '..')."
        )
    return script_name


def source_folder(source_directory: object, step: str) -> Path | None:
    """``source_directory`` as an absolute path; raise :class:`StepDefinitionError` if it cannot name a folder."""
    if source_directory is None:
        return None
    if not isinstance(source_directory, str | os.PathLike) or "\x00" in str(os.fspath(source_directory)):
        # No file system allows a NUL byte; without this check Python raises a bare ValueError.
        raise StepDefinitionError(
            f"Step '{step}': source_directory {source_directory!r} must be a folder path (text without NUL bytes)."
        )
    return Path(source_directory).resolve()


def check_script(source_directory: Path, script: str, step_name: str, argument: str = "script_name") -> None:
    """Raise :class:`ScriptNotFoundError` unless ``script`` is a file in ``source_directory``.

    :param argument: the step argument that named the script, for the message
    """
    if not source_directory.is_dir():
        raise ScriptNotFoundError(f"Step [{step_name}]: source_directory {str(source_directory)!r} is not a folder.")
    if not (source_directory / script).is_file():
        raise ScriptNotFoundError(
            f"Step [{step_name}]: script not found at {str(source_directory / script)!r}. Make sure "
            f"{argument} is relative to source_directory."
        )


def warn_hash_paths(hash_paths: object) -> None:
    """v1 deprecated ``hash_paths``: say it is ignored (the whole source directory counts)."""
    if hash_paths:
        warnings.warn(
            "hash_paths is deprecated (as in SDK v1) and ignored: the whole source_directory counts.",
            DeprecationWarning,
            stacklevel=3,
        )


class PythonScriptStep(PipelineStep):
    """Run ``python <script_name> <arguments>`` in a copy of ``source_directory``.

    The script sees SDK v1's contract: data objects in ``arguments`` become local paths, pipeline
    parameters become their values, and ``AZUREML_DATAREFERENCE_<port>`` / ``AML_PARAMETER_<name>``
    are set in its environment. No shell is involved.

    :param script_name: the script, relative to ``source_directory``
    :param name: the step's name (default: ``script_name``)
    :param arguments: command-line arguments
    :param compute_target: ``None``, ``"local"`` or a ``LocalCompute``: run on the Airflow worker
    :param runconfig: a ``RunConfiguration``; its environment variables are set for the script
    :param runconfig_pipeline_params: accepted for v1 compatibility (no runconfig field can be bound here)
    :param inputs: data the script reads
    :param outputs: ``PipelineData`` the script writes
    :param params: ``{key: value or PipelineParameter}``, each set as ``AML_PARAMETER_<key>``
    :param source_directory: the folder with the script (default: the pipeline's
        ``default_source_directory``, else the current folder)
    :param allow_reuse: let a later run reuse this step's results when nothing changed
    :param version: a free-form tag that changes the step's identity
    :param hash_paths: deprecated in v1 and ignored: the whole source directory counts
    """

    kind = "PythonScriptStep"
    kind_version = 1

    def __init__(
        self,
        script_name: str,
        name: str | None = None,
        arguments: list[Any] | None = None,
        compute_target: Any = None,
        runconfig: RunConfiguration | None = None,
        runconfig_pipeline_params: dict[str, Any] | None = None,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
        params: dict[str, Any] | None = None,
        source_directory: str | os.PathLike[str] | None = None,
        allow_reuse: bool = True,
        version: str | None = None,
        hash_paths: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        if "target" in kwargs:
            # The 2019 SDK (and the seed article) called it ``target``.
            if compute_target is not None:
                raise StepDefinitionError(f"Step '{name or script_name}': give compute_target or target, not both.")
            compute_target = kwargs.pop("target")
        if kwargs:
            raise TypeError(f"PythonScriptStep got unexpected keyword arguments: {sorted(kwargs)}")
        step_name = name if name is not None else script_name
        where = f"Step '{step_name}'"
        # Every check of this step comes before PipelineStep.__init__, which claims the outputs last.
        self.script_name = _check_script_name(script_name, str(step_name))
        if runconfig is not None and not isinstance(runconfig, RunConfiguration):
            raise StepDefinitionError(f"{where}: runconfig must be a RunConfiguration, not {type(runconfig).__name__}.")
        if runconfig_pipeline_params:
            raise StepDefinitionError(
                f"{where}: runconfig_pipeline_params {sorted(runconfig_pipeline_params)} cannot be "
                "bound: node and process counts have no meaning on an Airflow worker."
            )
        if not isinstance(allow_reuse, bool):
            raise StepDefinitionError(f"{where}: allow_reuse must be True or False.")
        self.source_directory = source_folder(source_directory, str(step_name))
        if self.source_directory is not None:
            self._check_script(self.source_directory, str(step_name))
        self._compute = compute_name(
            compute_target
            if compute_target is not None
            else (runconfig.target if runconfig and runconfig.target != "local" else None),
            where,
        )
        warn_hash_paths(hash_paths)
        self.runconfig = runconfig
        self.compute_target = compute_target
        self.allow_reuse = allow_reuse
        self.version = None if version is None else str(version)
        super().__init__(step_name, inputs, outputs, arguments, fix_port_name_collisions=True, params=params)

    def _check_script(self, source_directory: Path, step_name: str) -> None:
        check_script(source_directory, self.script_name, step_name)

    def _check(self, ctx: StepContext) -> list[str]:
        try:
            self._check_script(ctx.source_directory(self), self.name)
        except ScriptNotFoundError as exc:
            return [str(exc)]
        return []

    def _to_spec(self, ctx: StepContext) -> StepSpec:
        run = self.runconfig.to_dict() if self.runconfig else {"environment": None, "environment_variables": {}}
        config = {
            "script_name": self.script_name,
            "source_directory": str(ctx.source_directory(self)),
            "arguments": list(self._arguments),
            "params": self.params,
            "environment_variables": run["environment_variables"],
            "environment": run["environment"],
        }
        return self._base_spec(
            ctx, config=config, compute=self._compute, allow_reuse=self.allow_reuse, version=self.version
        )
