"""``PythonScriptStepOperator``: run a Python script as a subprocess of the worker, with v1's contract."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.base import AmlStepOperator
from aml_airflow_provider.runtime.contract import PARAMETER_TOKEN, expand

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.spec import StepSpec
    from aml_airflow_provider.storage.base import DatastoreBackend


class PythonScriptStepOperator(AmlStepOperator):
    """Run ``python <script_name> <arguments>`` in a snapshot of ``source_directory``.

    The script gets SDK v1's contract: ``$AZUREML_DATAREFERENCE_<port>`` and ``$AML_PARAMETER_<name>``
    in ``arguments`` and ``step_params`` are replaced by local paths and parameter values, and set as
    environment variables. No shell is involved. Its stdout and stderr stream into the task log (and
    the step run's driver log); a non-zero exit fails the task with the end of stderr in the error.

    :param script_name: the script, relative to ``source_directory`` (templated)
    :param source_directory: the folder holding the script; the step runs from a snapshot of it, taken
        now, unless ``snapshot`` names one taken earlier (templated)
    :param snapshot: id of a stored source snapshot to run from (set by ``submit`` and ``publish``)
    :param arguments: command-line arguments (templated)
    :param step_params: v1 ``params``: each ``key: value`` is set as ``AML_PARAMETER_<key>`` (templated)
    :param environment_variables: extra environment variables for the script (templated)
    :param environment: the declared environment (packages, image), part of the fingerprint
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
    kind = "PythonScriptStep"
    kind_version = 1

    def __init__(
        self,
        *,
        script_name: str,
        source_directory: str,
        snapshot: str | None = None,
        arguments: Sequence[str] = (),
        step_params: Mapping[str, str] | None = None,
        environment_variables: Mapping[str, str] | None = None,
        environment: Mapping[str, Any] | None = None,
        python: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script_name = script_name
        self.source_directory = source_directory
        self.snapshot = snapshot
        self.arguments = list(arguments)
        self.step_params = dict(step_params or {})
        self.environment_variables = dict(environment_variables or {})
        self.environment = dict(environment or {})
        self.python = python

    @classmethod
    def kwargs_from_config(cls, step: StepSpec) -> dict[str, Any]:
        config = step.config
        return {
            "script_name": config["script_name"],
            "source_directory": config["source_directory"],
            "snapshot": config.get("snapshot"),
            "arguments": list(config["arguments"]),
            "step_params": dict(config["params"]),
            "environment_variables": dict(config.get("environment_variables") or {}),
            "environment": dict(config.get("environment") or {}),
        }

    def source_snapshot(self, script_dir: Path, store: DatastoreBackend) -> str | None:
        """The pinned snapshot, or one taken now of ``source_directory`` (copied to ``script_dir`` first,
        so the step never runs from the live folder)."""
        from aml_airflow_provider.runtime import snapshot

        return snapshot.for_step(self.snapshot, Path(self.source_directory), script_dir, store)

    def prepare_workdir(self, script_dir: Path, work_dir: Path, *, store: DatastoreBackend, snapshot_id: str | None):
        from aml_airflow_provider.runtime import snapshot

        snapshot.fill_script_dir(self.snapshot, script_dir, store, work_dir)
        self.log.info("Step '%s' runs from source snapshot %s", self.step_name, snapshot_id)
        if not (script_dir / self.script_name).is_file():
            raise StepRunError(
                f"Step '{self.step_name}': script {self.script_name!r} is not in source snapshot {snapshot_id} "
                "(is it ignored by .amlignore/.gitignore?)."
            )

    def _contract(self, parameter_env: dict[str, str], data_env: dict[str, str]) -> dict[str, str]:
        contract = {**parameter_env, **data_env}
        for key, value in self.step_params.items():
            contract[f"AML_PARAMETER_{key}"] = expand(str(value), contract, where=f"Step '{self.step_name}' params")
        return contract

    def fingerprint_components(self, parameter_env: dict[str, str]) -> dict[str, Any]:
        from aml_airflow_provider.runtime.reuse import digest

        # Parameters are resolved; data placeholders stay as written (inputs count by content instead).
        where = f"Step '{self.step_name}'"
        params = {
            k: expand(str(v), parameter_env, where=where, only=PARAMETER_TOKEN) for k, v in self.step_params.items()
        }
        resolved = {**parameter_env, **{f"AML_PARAMETER_{k}": v for k, v in params.items()}}
        return {
            "script": self.script_name,
            "arguments": [expand(str(a), resolved, where=where, only=PARAMETER_TOKEN) for a in self.arguments],
            "params": params,
            # Variables count by a hash of their values: the reuse index and its log lines must not
            # repeat what someone put there (a token, say).
            "environment": {"declared": self.environment, "variables": digest(self.environment_variables)},
        }

    def _interpreter(self, driver_log: Path) -> str:
        """The Python that runs the script: the worker's, the environment's own (user-managed), or a
        virtualenv with the environment's packages, built on this worker on first use."""
        from aml_airflow_provider.runtime.virtualenv import default_root, ensure_virtualenv, requirements_of

        if self.environment.get("user_managed"):
            path = str(self.environment.get("interpreter_path") or "python")
            return sys.executable if path == "python" else path
        requirements = requirements_of(self.environment)
        if not requirements:
            return sys.executable
        venv = ensure_virtualenv(requirements, default_root(), where=f"Step '{self.step_name}'")
        line = (
            f"Running in virtualenv {venv.path} ({'built' if venv.built else 'found'} in {venv.seconds:.1f} s) "
            f"for {', '.join(requirements)}"
        )
        self.log.info("%s", line)
        with open(driver_log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return str(venv.python)

    def run_step(
        self,
        context: Context,
        *,
        script_dir: Path,
        data_env: dict[str, str],
        parameter_env: dict[str, str],
        tracking_dir: Path,
        driver_log: Path,
        should_stop: Callable[[], str | None],
    ) -> None:
        ti = context["ti"]
        where = f"Step '{self.step_name}'"
        contract = self._contract(parameter_env, data_env)
        env = self.script_environment(ti, tracking_dir, contract, self.environment_variables)
        args = [expand(str(a), contract, where=f"{where} argument {a!r}") for a in self.arguments]
        with open(driver_log, "a", encoding="utf-8") as fh:
            # v1's driver log showed both lines; they tell a user what their arguments became.
            for line in (
                f"Preparing to call script [ {self.script_name} ] with arguments: {self.arguments}",
                f"After variable expansion, calling script [ {self.script_name} ] with arguments: {args}",
            ):
                self.log.info("%s", line)
                fh.write(line + "\n")
        self.run_process(
            [self.python or self._interpreter(driver_log), self.script_name, *args],
            script_dir,
            env,
            driver_log,
            should_stop,
            failure=lambda code: f"{where} failed: {self.script_name} exited with code {code}.",
        )
