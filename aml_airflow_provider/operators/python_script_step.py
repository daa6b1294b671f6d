"""``PythonScriptStepOperator``: run a Python script as a subprocess of the worker, with v1's contract."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.base import AmlStepOperator, set_plain_attributes
from aml_airflow_provider.runtime.contract import PARAMETER_TOKEN, expand
from aml_airflow_provider.runtime.launcher import StepProcess

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
    :param environment: the declared environment (packages, image), part of the fingerprint. Packages
        give a virtualenv on the worker; an image (``docker.enabled``) runs the script in a container
    :param python: the interpreter (default: the worker's own)
    :param container: a ``DockerCompute``'s settings (``docker_url``, ``image``, ``mem_limit``, ``cpus``,
        ``shm_size``, ``network_mode``, ``docker_conn_id``): run the script in a container there
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
    runs_in_containers = True

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
        container: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        set_plain_attributes(
            self,
            script_name=script_name,
            source_directory=source_directory,
            snapshot=snapshot,
            arguments=list(arguments),
            step_params=dict(step_params or {}),
            environment_variables=dict(environment_variables or {}),
            environment=dict(environment or {}),
            python=python,
            container=dict(container) if container is not None else None,
        )

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
        from aml_airflow_provider.runtime.virtualenv import default_root, ensure_virtualenv, requirements_of, shown

        if self.environment.get("user_managed"):
            path = str(self.environment.get("interpreter_path") or "python")
            if path == "python":
                return sys.executable
            found = shutil.which(path)
            if found is None:
                raise StepRunError(
                    f"Step '{self.step_name}': its environment's interpreter_path {path!r} is not an executable on "
                    "this worker; install that Python on the workers or set user_managed_dependencies=False."
                )
            return found
        requirements = requirements_of(self.environment)
        if not requirements:
            return sys.executable
        venv = ensure_virtualenv(requirements, default_root(), where=f"Step '{self.step_name}'")
        line = (
            f"Running in virtualenv {venv.path} ({'built' if venv.built else 'found'} in {venv.seconds:.1f} s) "
            f"for {shown(requirements)}"
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
        image = self._image()
        env = self.script_environment(ti, tracking_dir, contract, self.environment_variables, inherit=image is None)
        args = [expand(str(a), contract, where=f"{where} argument {a!r}") for a in self.arguments]
        with open(driver_log, "a", encoding="utf-8") as fh:
            # v1's driver log showed both lines; they tell a user what their arguments became.
            for line in (
                f"Preparing to call script [ {self.script_name} ] with arguments: {self.arguments}",
                f"After variable expansion, calling script [ {self.script_name} ] with arguments: {args}",
            ):
                self.log.info("%s", line)
                fh.write(line + "\n")
        if image is None:
            argv = [self.python or self._interpreter(driver_log), self.script_name, *args]
            process = StepProcess(argv, script_dir, env, self.log, driver_log)
        else:
            process = self._container(ti, image, script_dir, args, env, data_env, tracking_dir, driver_log)
        self.run_process(
            process, should_stop, failure=lambda code: f"{where} failed: {self.script_name} exited with code {code}."
        )

    def _image(self) -> str | None:
        """The image to run the script in: the environment's (``docker.enabled``), the DockerCompute's, v1's
        default CPU image for a DockerCompute that names none; ``None`` to run on the worker."""
        from aml_airflow_provider.core.runconfig import DEFAULT_CPU_IMAGE

        image = self.environment.get("docker_image")
        if image or self.container is None:
            return image or None
        return self.container.get("image") or DEFAULT_CPU_IMAGE

    def _container(
        self,
        ti: Any,
        image: str,
        script_dir: Path,
        args: list[str],
        env: dict[str, str],
        data_env: Mapping[str, str],
        tracking_dir: Path,
        driver_log: Path,
    ) -> Any:
        """The step's container (see :mod:`aml_airflow_provider.runtime.container`)."""
        from aml_airflow_provider._names import data_env_name
        from aml_airflow_provider.runtime.container import ContainerProcess, DockerSettings, container_spec
        from aml_airflow_provider.runtime.virtualenv import requirements_of

        settings = DockerSettings.from_mapping(self.container)
        outputs = {data_env_name(str(port["name"])) for port in self.outputs}
        tracking_dir.mkdir(parents=True, exist_ok=True)
        spec = container_spec(
            image=image,
            script_dir=script_dir,
            script=self.script_name,
            arguments=args,
            environment=env,
            requirements=[] if self.environment.get("user_managed") else requirements_of(self.environment),
            read_only=[path for name, path in data_env.items() if name not in outputs],
            writable=[*(path for name, path in data_env.items() if name in outputs), str(tracking_dir)],
            settings=settings,
            labels={"aml.dag_id": ti.dag_id, "aml.run_id": ti.run_id, "aml.task_id": ti.task_id},
        )
        line = f"Running in container {spec.name} of image {image} on {settings.docker_url}"
        self.log.info("%s", line)
        with open(driver_log, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
        return ContainerProcess(spec, settings, self.log, driver_log)
