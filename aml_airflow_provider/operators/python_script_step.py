"""``PythonScriptStepOperator``: run a Python script as a subprocess of the worker, with v1's contract."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.exceptions import StepRunError, UserErrorException
from aml_airflow_provider.operators.base import AmlStepOperator
from aml_airflow_provider.runtime.contract import base_environment, expand
from aml_airflow_provider.runtime.launcher import StepProcess

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.spec import StepSpec

#: Never copied into a step's working directory (v1's default ignores, plus caches).
SNAPSHOT_IGNORE = (
    ".git",
    "__pycache__",
    ".ipynb_checkpoints",
    "azureml-logs",
    "azureml-setup",
    ".azureml",
    "outputs",
)


class PythonScriptStepOperator(AmlStepOperator):
    """Run ``python <script_name> <arguments>`` in a copy of ``source_directory``.

    The script gets SDK v1's contract: ``$AZUREML_DATAREFERENCE_<port>`` and ``$AML_PARAMETER_<name>``
    in ``arguments`` and ``step_params`` are replaced by local paths and parameter values, and set as
    environment variables. No shell is involved. Its stdout and stderr stream into the task log; a
    non-zero exit fails the task with the end of stderr in the error.

    :param script_name: the script, relative to ``source_directory`` (templated)
    :param source_directory: the folder holding the script (templated)
    :param arguments: command-line arguments (templated)
    :param step_params: v1 ``params``: each ``key: value`` is set as ``AML_PARAMETER_<key>`` (templated)
    :param environment_variables: extra environment variables for the script (templated)
    :param python: the interpreter (default: the worker's own)
    :param kwargs: see :class:`~aml_airflow_provider.operators.base.AmlStepOperator`
    """

    template_fields: Sequence[str] = (
        *AmlStepOperator.template_fields,
        "script_name",
        "source_directory",
        "arguments",
        "step_params",
        "environment_variables",
    )
    template_fields_renderers = {
        **AmlStepOperator.template_fields_renderers,
        "arguments": "json",
        "step_params": "json",
        "environment_variables": "json",
    }

    def __init__(
        self,
        *,
        script_name: str,
        source_directory: str,
        arguments: Sequence[str] = (),
        step_params: Mapping[str, str] | None = None,
        environment_variables: Mapping[str, str] | None = None,
        python: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script_name = script_name
        self.source_directory = source_directory
        self.arguments = list(arguments)
        self.step_params = dict(step_params or {})
        self.environment_variables = dict(environment_variables or {})
        self.python = python
        self._process: StepProcess | None = None

    @classmethod
    def kwargs_from_config(cls, step: StepSpec) -> dict[str, Any]:
        config = step.config
        return {
            "script_name": config["script_name"],
            "source_directory": config["source_directory"],
            "arguments": list(config["arguments"]),
            "step_params": dict(config["params"]),
            "environment_variables": dict(config.get("environment_variables") or {}),
        }

    def prepare_workdir(self, script_dir: Path) -> None:
        # The script runs in a copy, so whatever it writes never lands in the source folder.
        source = Path(self.source_directory)
        if not (source / self.script_name).is_file():
            raise UserErrorException(
                f"Step '{self.step_name}': script {self.script_name!r} not found in {str(source)!r} on this worker."
            )
        shutil.copytree(source, script_dir, ignore=shutil.ignore_patterns(*SNAPSHOT_IGNORE), symlinks=True)

    def run_step(
        self, context: Context, *, script_dir: Path, data_env: dict[str, str], parameter_env: dict[str, str]
    ) -> None:
        ti = context["ti"]
        where = f"Step '{self.step_name}'"
        contract = {**parameter_env, **data_env}
        for key, value in self.step_params.items():
            contract[f"AML_PARAMETER_{key}"] = expand(str(value), contract, where=f"{where} params[{key!r}]")
        env = {
            **base_environment(),
            **{str(k): str(v) for k, v in self.environment_variables.items()},
            **contract,
            "AZUREML_RUN_ID": f"{ti.run_id}.{ti.task_id}",
            "AZUREML_ROOT_RUN_ID": ti.run_id,
            "AZUREML_EXPERIMENT_NAME": ti.dag_id,
            "AZUREML_ARM_WORKSPACE_NAME": self.workspace,
            "AZUREML_STEP_NAME": self.step_name,
            "PYTHONUNBUFFERED": "1",
        }
        args = [expand(str(a), contract, where=f"{where} argument {a!r}") for a in self.arguments]
        self.log.info("Preparing to call script [ %s ] with arguments: %s", self.script_name, self.arguments)
        self.log.info("After variable expansion, calling script [ %s ] with arguments: %s", self.script_name, args)
        self._process = StepProcess([self.python or sys.executable, self.script_name, *args], script_dir, env, self.log)
        result = self._process.run()
        if result.returncode != 0:
            tail = "\n".join(result.stderr_tail) or "(no output on stderr)"
            raise StepRunError(
                f"Step '{self.step_name}' failed: {self.script_name} exited with code {result.returncode}. "
                f"End of its stderr:\n{tail}"
            )

    def on_kill(self) -> None:
        if self._process is not None:
            self._process.terminate()
