"""The shared body of every step operator: resolve inputs, stage outputs, run, publish, push XCom."""

from __future__ import annotations

import re
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from aml_airflow_provider._names import data_env_name, parameter_env_name
from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.spec import InputSpec, OutputSpec, PipelineSpec, StepSpec, port_dict
from aml_airflow_provider.uris import DatastoreUri

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.storage.base import DatastoreBackend

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def run_folder(dag_id: str, run_id: str) -> str:
    """The datastore folder of a DAG run's outputs: ``azureml/<dag_id>/<run id made path-safe>``."""
    return f"azureml/{dag_id}/{_UNSAFE_PATH_CHARS.sub('_', run_id)}"


class AmlStepOperator(BaseOperator):
    """Base of the step operators.

    Subclasses implement :meth:`run_step`; this class makes the inputs local, gives the step paths for
    its outputs, publishes the outputs when the step succeeds (discarding them when it fails), and
    pushes each output's ``azureml://`` URI to XCom under the output's name.

    :param workspace: the workspace whose datastores the ports name
    :param inputs: input ports, as dicts of :class:`~aml_airflow_provider.spec.InputSpec` fields:
        ``name`` plus one of ``uri`` (a fixed location), ``step`` + ``output`` (an upstream task's
        output) or ``parameter`` (a DAG param holding a URI), and ``mode``, ``path_on_compute``,
        ``overwrite`` (templated)
    :param outputs: output ports, as dicts of :class:`~aml_airflow_provider.spec.OutputSpec` fields
        (``name``, ``datastore``, ``mode``, ...) (templated)
    :param pipeline_parameters: names of DAG params the step sees as ``AML_PARAMETER_<name>``
    :param step_name: the step's display name (default: the task id)
    :param continue_on_step_failure: v1's flag. ``False``: once any step of the run has failed, this
        step does not start (it is skipped, shown as ``Canceled``). ``True`` (Airflow's own behaviour):
        only steps downstream of the failure are held back. Either way the run ends ``Failed``.
    """

    template_fields: Sequence[str] = ("inputs", "outputs")
    template_fields_renderers = {"inputs": "json", "outputs": "json"}
    ui_color = "#cfe8ff"

    def __init__(
        self,
        *,
        workspace: str,
        inputs: Sequence[Mapping[str, Any]] = (),
        outputs: Sequence[Mapping[str, Any]] = (),
        pipeline_parameters: Sequence[str] = (),
        step_name: str | None = None,
        continue_on_step_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.continue_on_step_failure = continue_on_step_failure
        self.workspace = workspace
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.pipeline_parameters = list(pipeline_parameters)
        self.step_name = step_name or self.task_id
        self._backends: dict[str, DatastoreBackend] = {}

    # -- building from a spec ---------------------------------------------------------------------
    @classmethod
    def from_step_spec(cls, step: StepSpec, pipeline: PipelineSpec, **kwargs: Any) -> AmlStepOperator:
        """Build the task of ``step`` (called by the translator through the operator registry).

        The task is not Jinja-templated: a v1 pipeline's values were never templates, and text such as
        ``{{`` or a trailing newline must reach the script exactly as written.
        """
        task = cls(
            task_id=step.task_id,
            step_name=step.name,
            workspace=pipeline.workspace,
            inputs=[port_dict(i) for i in step.inputs],
            outputs=[port_dict(o) for o in step.outputs],
            pipeline_parameters=list(step.parameters),
            **cls.kwargs_from_config(step),
            **kwargs,
        )
        task.template_fields = ()
        return task

    @classmethod
    @abstractmethod
    def kwargs_from_config(cls, step: StepSpec) -> dict[str, Any]:
        """The subclass's constructor arguments for the kind-specific part of a step spec."""

    # -- execution --------------------------------------------------------------------------------
    def backend(self, datastore: str) -> DatastoreBackend:
        if datastore not in self._backends:
            from aml_airflow_provider.hooks.datastore import AmlDatastoreHook

            self._backends[datastore] = AmlDatastoreHook.for_datastore(self.workspace, datastore).backend
        return self._backends[datastore]

    def _parse_ports(self) -> tuple[list[InputSpec], list[OutputSpec]]:
        """Validate the (rendered) port dicts; raise naming the task and port."""
        try:
            inputs = [InputSpec(**dict(p)) for p in self.inputs]
            outputs = [OutputSpec(**dict(p)) for p in self.outputs]
        except TypeError as exc:
            raise UserErrorException(f"Task '{self.task_id}': invalid port definition: {exc}") from None
        for port in inputs:
            sources = [port.uri is not None, port.step is not None, port.parameter is not None]
            if sum(sources) != 1 or (port.step is not None) != (port.output is not None):
                raise UserErrorException(
                    f"Task '{self.task_id}': input '{port.name}' needs exactly one of uri, step+output or parameter."
                )
        return inputs, outputs

    def _input_location(self, port: InputSpec, context: Context) -> DatastoreUri:
        if port.uri is not None:
            return DatastoreUri.parse(port.uri)
        if port.parameter is not None:
            value = context["params"].get(port.parameter)
            if value is None:
                raise UserErrorException(
                    f"Task '{self.task_id}': DAG param '{port.parameter}' (input '{port.name}') has no value."
                )
            return DatastoreUri.parse(value)
        uri = context["ti"].xcom_pull(task_ids=port.step, key=port.output)
        if not uri:
            raise UserErrorException(
                f"Task '{self.task_id}': input '{port.name}' needs output '{port.output}' of task '{port.step}', "
                "which pushed none (did that task succeed in this run?)."
            )
        return DatastoreUri.parse(uri)

    def parameter_environment(self, context: Context) -> dict[str, str]:
        """``AML_PARAMETER_<name>`` for each pipeline parameter of the step, from the run's params."""
        from aml_airflow_provider.runtime.contract import value_text

        params = context["params"]
        env = {}
        for name in self.pipeline_parameters:
            if name not in params:
                raise UserErrorException(f"Task '{self.task_id}': the DAG has no param '{name}'.")
            value = params[name]
            env[parameter_env_name(name)] = value_text(value)
        return env

    def _stop_if_run_failed(self, ti: Any) -> None:
        """v1's ``continue_on_step_failure=False``: do not start once another step of the run failed."""
        if self.continue_on_step_failure:
            return
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        failed = sorted(task for task, state in states.items() if state == "failed")
        if failed:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                f"Step '{self.step_name}' not started: {', '.join(failed)} failed "
                "and continue_on_step_failure is False."
            )

    def execute(self, context: Context) -> dict[str, str]:
        # Imported here: parsing a DAG file needs none of the run-time machinery.
        from aml_airflow_provider.runtime.data import StepData

        inputs, outputs = self._parse_ports()
        ti = context["ti"]
        self._stop_if_run_failed(ti)
        folder = run_folder(ti.dag_id, ti.run_id)
        work_dir = Path(tempfile.mkdtemp(prefix=f"aml-{self.task_id[:40]}-"))
        try:
            script_dir = work_dir / "src"
            data = StepData(self.backend, work_dir, script_dir, self.log)
            self.prepare_workdir(script_dir)
            try:
                data_env: dict[str, str] = {}
                for port in inputs:
                    data_env[data_env_name(port.name)] = str(
                        data.prepare_input(port, self._input_location(port, context))
                    )
                for out in outputs:
                    location = DatastoreUri(out.datastore, f"{folder}/{self.task_id}/{out.name}")
                    data_env[data_env_name(out.name)] = str(data.prepare_output(out, location))
                self.run_step(
                    context,
                    script_dir=script_dir,
                    data_env=data_env,
                    parameter_env=self.parameter_environment(context),
                )
                uris = data.publish()
            finally:
                data.discard()
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        for name, uri in uris.items():
            ti.xcom_push(key=name, value=uri)
        return uris

    def prepare_workdir(self, script_dir: Path) -> None:
        """Fill the script's working directory before inputs are placed (default: create it)."""
        script_dir.mkdir(parents=True, exist_ok=True)

    @abstractmethod
    def run_step(
        self, context: Context, *, script_dir: Path, data_env: dict[str, str], parameter_env: dict[str, str]
    ) -> None:
        """Do the step's work; raise on failure.

        :param script_dir: the working directory (with the source snapshot)
        :param data_env: ``AZUREML_DATAREFERENCE_<port>`` -> local path, for every port
        :param parameter_env: ``AML_PARAMETER_<name>`` -> value, for the pipeline parameters
        """
