"""``AdlaStep``: run a U-SQL script as an Azure Data Lake Analytics job."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.core.compute import AdlaCompute, ComputeTarget
from aml_airflow_provider.exceptions import ScriptNotFoundError, StepDefinitionError
from aml_airflow_provider.pipeline.core.builder import PipelineStep, StepContext
from aml_airflow_provider.pipeline.core.graph import PipelineParameter
from aml_airflow_provider.pipeline.steps.python_script_step import (
    _check_script_name,
    check_script,
    source_folder,
    warn_hash_paths,
)

if TYPE_CHECKING:
    from aml_airflow_provider.spec import StepSpec

#: ``@@name@@`` in a U-SQL script: replaced by an input's or output's location, or a ``params`` value.
PLACEHOLDER = re.compile(r"@@(\w+)@@")


def placeholders(script: str) -> list[str]:
    """The placeholder names a script uses, in order of first use."""
    return list(dict.fromkeys(PLACEHOLDER.findall(script)))


def _positive_int(value: Any, what: str, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise StepDefinitionError(f"{where}: {what} must be a whole number of at least 1, not {value!r}.")
    return value


class AdlaStep(PipelineStep):
    """Run a U-SQL script on Data Lake Analytics, as in SDK v1.

    ``@@name@@`` placeholders in the script are replaced, before it is submitted, by the location of
    the input or output port ``name``, or by the value of ``params[name]`` (PipelineParameters
    included). A placeholder with no value is an error naming it.

    :param script_name: the U-SQL script, relative to ``source_directory``
    :param name: the step's name (default: ``script_name``)
    :param inputs: data the script reads
    :param outputs: ``PipelineData`` the script writes
    :param params: ``{name: value or PipelineParameter}`` for ``@@name@@`` placeholders
    :param degree_of_parallelism: the job's analytics units (below 1 means 1, as in v1)
    :param priority: the job's priority (lower runs first)
    :param runtime_version: the U-SQL runtime
    :param compute_target: an ``AdlaCompute`` or its name
    :param source_directory: the folder with the script (default: the pipeline's ``default_source_directory``)
    :param allow_reuse: let a later run reuse this step's results when nothing changed
    :param version: a free-form tag that changes the step's identity
    :param hash_paths: deprecated in v1 and ignored: the whole source directory counts
    """

    kind = "AdlaStep"
    kind_version = 1

    def __init__(
        self,
        script_name: str,
        name: str | None = None,
        inputs: list[Any] | None = None,
        outputs: list[Any] | None = None,
        params: dict[str, Any] | None = None,
        degree_of_parallelism: int | None = None,
        priority: int | None = None,
        runtime_version: str | None = None,
        compute_target: Any = None,
        source_directory: str | os.PathLike[str] | None = None,
        allow_reuse: bool = True,
        version: str | None = None,
        hash_paths: list[str] | None = None,
    ) -> None:
        step_name = name if name is not None else script_name
        where = f"AdlaStep '{step_name}'"
        # Every check comes before PipelineStep.__init__, which claims the outputs last.
        self.script_name = _check_script_name(script_name, str(step_name))
        if isinstance(degree_of_parallelism, int) and not isinstance(degree_of_parallelism, bool):
            degree_of_parallelism = max(degree_of_parallelism, 1)  # v1 ran with 1 for anything below
        self.degree_of_parallelism = _positive_int(degree_of_parallelism, "degree_of_parallelism", where)
        self.priority = _positive_int(priority, "priority", where)
        if runtime_version is not None and (not isinstance(runtime_version, str) or not runtime_version.strip()):
            raise StepDefinitionError(f"{where}: runtime_version must be a non-empty string.")
        self.runtime_version = runtime_version
        if isinstance(compute_target, AdlaCompute):
            self._compute = compute_target.name
        elif isinstance(compute_target, str) and compute_target.strip() and compute_target != "local":
            self._compute = compute_target
        elif compute_target is None:
            raise StepDefinitionError(f"{where}: compute_target is required: an AdlaCompute or its name.")
        else:
            kind = type(compute_target).__name__ if isinstance(compute_target, ComputeTarget) else repr(compute_target)
            raise StepDefinitionError(f"{where}: compute_target must be an AdlaCompute or its name, not {kind}.")
        for key, value in (params or {}).items():
            if not isinstance(value, str | int | float | bool | PipelineParameter):
                raise StepDefinitionError(
                    f"{where}: params['{key}'] is a {type(value).__name__}; give str, int, float, bool or "
                    "PipelineParameter values."
                )
        if not isinstance(allow_reuse, bool):
            raise StepDefinitionError(f"{where}: allow_reuse must be True or False.")
        self.source_directory = source_folder(source_directory, str(step_name))
        warn_hash_paths(hash_paths)
        self.compute_target = compute_target
        self.allow_reuse = allow_reuse
        self.version = None if version is None else str(version)
        if self.source_directory is not None:
            problems = self._script_problems(str(step_name), self.source_directory, inputs, outputs, params)
            if problems:
                raise problems[0]
        super().__init__(step_name, inputs, outputs, params=params)

    def _script_problems(
        self, step_name: str, source_directory: Path, inputs: Any, outputs: Any, params: Any
    ) -> list[StepDefinitionError]:
        """The script must exist, and every ``@@name@@`` in it must have a value."""
        try:
            check_script(source_directory, self.script_name, step_name)
        except ScriptNotFoundError as exc:
            return [exc]
        script = source_directory / self.script_name
        known = set(params or {})
        for item in [*(inputs or ()), *(outputs or ())]:
            for attr in ("output_name", "name"):
                value = getattr(item, attr, None)
                if isinstance(value, str):
                    known.add(value)
        missing = [p for p in placeholders(script.read_text(encoding="utf-8", errors="replace")) if p not in known]
        if missing:
            return [
                StepDefinitionError(
                    f"AdlaStep '{step_name}': {self.script_name} uses @@{missing[0]}@@, which is no input, output or "
                    f"params key of the step{' (also: ' + ', '.join(missing[1:]) + ')' if missing[1:] else ''}."
                )
            ]
        return []

    def _check(self, ctx: StepContext) -> list[str]:
        names = {p.name for p in self._inputs} | {o.output_name for o in self._outputs}
        known = {**self._params, **dict.fromkeys(names)}
        return [str(p) for p in self._script_problems(self.name, ctx.source_directory(self), [], [], known)]

    def _to_spec(self, ctx: StepContext) -> StepSpec:
        config = {
            "script_name": self.script_name,
            "source_directory": str(ctx.source_directory(self)),
            "params": self.params,
            "degree_of_parallelism": self.degree_of_parallelism,
            "priority": self.priority,
            "runtime_version": self.runtime_version,
        }
        return self._base_spec(
            ctx, config=config, compute=self._compute, allow_reuse=self.allow_reuse, version=self.version
        )
