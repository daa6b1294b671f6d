"""The shared body of every step operator.

A step run goes: take (or fetch) the source snapshot → locate the inputs → fingerprint → reuse an
earlier run, or make the inputs local, run, publish the outputs → keep metrics, files and the log →
record the run in the reuse index → push the outputs' URIs to XCom.
"""

from __future__ import annotations

import inspect
import re
import shutil
import tempfile
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperator

from aml_airflow_provider import xcom
from aml_airflow_provider._names import data_env_name, parameter_env_name
from aml_airflow_provider.exceptions import DataPathError, StepRunError, UserErrorException
from aml_airflow_provider.operators.links import StepLogsLink, StepOutputsLink
from aml_airflow_provider.spec import (
    CONTINUE_CONF_KEY,
    REGENERATE_PARAM,
    InputSpec,
    OutputSpec,
    PipelineSpec,
    StepSpec,
    port_dict,
)
from aml_airflow_provider.uris import DatastoreUri

if TYPE_CHECKING:
    from airflow.sdk import Context

    from aml_airflow_provider.runtime.reuse import Fingerprint, ReuseIndex
    from aml_airflow_provider.storage.base import DatastoreBackend

_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
#: How often a running step checks whether the run was cancelled or, without
#: continue_on_step_failure, another step failed.
WATCH_SECONDS = 2.0


@dataclass
class FreshRun:
    """Everything known about a step run that was not reused, for :meth:`AmlStepOperator.run_fresh`."""

    context: Context
    store: DatastoreBackend
    index: ReuseIndex
    fingerprint: Fingerprint
    work_dir: Path
    script_dir: Path
    inputs: list[InputSpec]
    outputs: list[OutputSpec]
    locations: Mapping[str, DatastoreUri]
    parameter_env: dict[str, str]
    folder: str
    snapshot_id: str | None
    step_run_uri: DatastoreUri
    facts: dict[str, Any]

    def output_location(self, port: OutputSpec) -> DatastoreUri:
        """Where this run writes an output."""
        return DatastoreUri(port.datastore, f"{self.folder}/{port.name}")


def run_folder(dag_id: str, run_id: str) -> str:
    """The datastore folder of a DAG run's outputs: ``azureml/<dag_id>/<run id made path-safe>``."""
    return f"azureml/{dag_id}/{_UNSAFE_PATH_CHARS.sub('_', run_id)}"


class SharedBaseMeta(type(BaseOperator)):
    """Airflow's operator metaclass, with one ``apply_defaults`` of the step operators' own per task.

    Airflow wraps the ``__init__`` of every operator class that defines one, and each wrapper deep-copies
    the DAG's params and walks the arguments: through ``PythonScriptStepOperator`` → ``AmlStepOperator``
    → ``BaseOperator`` a task paid that three times. A class that sets ``_shared_base = True`` in its body
    keeps a plain ``__init__`` (and ``AmlStepOperator`` calls ``BaseOperator``'s unwrapped); a class below
    it gets the one wrapper, whose signature lists the shared bases' and ``BaseOperator``'s arguments, so
    ``default_args`` still fill them all (``default_args={"workspace": ..., "retries": ...}``).
    """

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any):
        cls = super().__new__(mcs, name, bases, namespace, **kwargs)
        init = cls.__init__
        plain = getattr(init, "__wrapped__", init)
        if namespace.get("_shared_base", False):
            cls.__init__ = plain
        elif "__init__" in namespace or plain is init:
            if "__init__" not in namespace:  # inherited from a shared base: give it a function of its own

                def own_init(self: Any, **init_kwargs: Any) -> None:
                    plain(self, **init_kwargs)

                plain = own_init
            plain.__signature__ = _merged_signature(cls)
            cls.__init__ = mcs._apply_defaults(plain)
        return cls


def set_plain_attributes(task: BaseOperator, **values: Any) -> None:
    """Set an operator's own attributes in its ``__init__``, past Airflow's ``__setattr__``.

    Until ``__init__`` returns, that ``__setattr__`` only looks for a ``_convert_<name>`` method and
    records the task's init arguments, neither of which concerns these attributes (``XComArg`` s among
    them are still found when ``__init__`` returns); it cost a fifth of building a step's task, and
    every parse of a DAG file builds every task.
    """
    vars(task).update(values)


def _merged_signature(cls: type) -> inspect.Signature:
    """The keyword arguments of ``cls``'s ``__init__``, of its shared bases' and of ``BaseOperator``'s."""
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    merged: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__[: cls.__mro__.index(BaseOperator) + 1]:
        init = vars(klass).get("__init__")
        if init is None:
            continue
        for param in inspect.signature(getattr(init, "__wrapped__", init)).parameters.values():
            if param.name != "self" and param.kind is param.KEYWORD_ONLY:
                merged.setdefault(param.name, param)
    var_kwargs = inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)
    return inspect.Signature([self_param, *merged.values(), var_kwargs])


class AmlStepOperator(BaseOperator, metaclass=SharedBaseMeta):
    """Base of the step operators.

    Subclasses implement :meth:`run_step` (and may extend :meth:`source_snapshot`,
    :meth:`prepare_workdir` and :meth:`fingerprint_components`); this class does everything around
    it: reuse, inputs, outputs, tracking and XCom.

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
        step does not start, and stops if it is running (it ends skipped, shown as ``Canceled``).
        ``True`` (Airflow's own behaviour): only steps downstream of the failure are held back.
        Either way the run ends ``Failed``.
    :param allow_reuse: reuse an earlier run of the step whose fingerprint is the same
    :param version: v1's free-form step version (part of the fingerprint)
    :param compute_target: the compute's name (part of the fingerprint)
    :param default_datastore: where snapshots, the reuse index and step-run records go (default:
        the workspace's default datastore)
    """

    template_fields: Sequence[str] = ("inputs", "outputs")
    template_fields_renderers = {"inputs": "json", "outputs": "json"}
    operator_extra_links = (StepOutputsLink(), StepLogsLink())
    ui_color = "#cfe8ff"
    #: Step kind and its semantics version (part of the fingerprint).
    kind: ClassVar[str] = "AmlStep"
    kind_version: ClassVar[int] = 1
    #: Whether the step can run in a Docker container (a ``DockerCompute``; takes a ``container`` argument).
    runs_in_containers: ClassVar[bool] = False
    _shared_base: ClassVar[bool] = True
    # Set in __init__ (see set_plain_attributes).
    _backends: dict[str, DatastoreBackend]
    _process: Any
    #: The facts each upstream step pushed, pulled once per task instance: ``(ti, {task_id: facts})``.
    _pulled_facts: tuple[Any, dict[str, dict[str, Any]]] | None
    #: ``((dag_id, run_id, task_id, map_index), facts)`` of the last step run pushed from here.
    step_run_facts: tuple[tuple[Any, ...], dict[str, Any]] | None

    def __init__(
        self,
        *,
        workspace: str,
        inputs: Sequence[Mapping[str, Any]] = (),
        outputs: Sequence[Mapping[str, Any]] = (),
        pipeline_parameters: Sequence[str] = (),
        step_name: str | None = None,
        continue_on_step_failure: bool = True,
        allow_reuse: bool = True,
        version: str | None = None,
        compute_target: str | None = None,
        default_datastore: str | None = None,
        **kwargs: Any,
    ) -> None:
        # The step operator's own wrapper has done what BaseOperator's would (see SharedBaseMeta).
        BaseOperator.__init__.__wrapped__(self, **kwargs)
        set_plain_attributes(
            self,
            workspace=workspace,
            inputs=list(inputs),
            outputs=list(outputs),
            pipeline_parameters=list(pipeline_parameters),
            step_name=step_name or self.task_id,
            continue_on_step_failure=continue_on_step_failure,
            allow_reuse=allow_reuse,
            version=version,
            compute_target=compute_target,
            default_datastore=default_datastore,
            _backends={},
            _process=None,
            _pulled_facts=None,
            step_run_facts=None,
        )

    # -- building from a spec ---------------------------------------------------------------------
    @classmethod
    def from_step_spec(cls, step: StepSpec, pipeline: PipelineSpec, **kwargs: Any) -> AmlStepOperator:
        """Build the task of ``step`` (called by the translator through the operator registry).

        The task is not Jinja-templated: a v1 pipeline's values were never templates, and text such as
        ``{{`` or a trailing newline must reach the script exactly as written.
        """
        task = cls.__new__(cls)
        # Set before __init__, so Airflow does not search the ports and arguments for XComArgs either.
        object.__setattr__(task, "template_fields", ())
        task.__init__(
            task_id=step.task_id,
            step_name=step.name,
            workspace=pipeline.workspace,
            inputs=[port_dict(i) for i in step.inputs],
            outputs=[port_dict(o) for o in step.outputs],
            pipeline_parameters=list(step.parameters),
            allow_reuse=step.allow_reuse,
            version=step.version,
            compute_target=step.compute,
            default_datastore=pipeline.default_datastore,
            **cls.kwargs_from_config(step),
            **kwargs,
        )
        return task

    @classmethod
    @abstractmethod
    def kwargs_from_config(cls, step: StepSpec) -> dict[str, Any]:
        """The subclass's constructor arguments for the kind-specific part of a step spec."""

    # -- helpers ----------------------------------------------------------------------------------
    def backend(self, datastore: str) -> DatastoreBackend:
        if datastore not in self._backends:
            from aml_airflow_provider.hooks.datastore import AmlDatastoreHook

            self._backends[datastore] = AmlDatastoreHook.for_datastore(self.workspace, datastore).backend
        return self._backends[datastore]

    def _default_store(self) -> DatastoreBackend:
        if self.default_datastore is None:
            from aml_airflow_provider.deployment.base import workspace_conn_id
            from aml_airflow_provider.hooks.workspace import AmlWorkspaceHook

            settings = AmlWorkspaceHook(workspace_conn_id(self.workspace)).get_conn()
            self.default_datastore = settings["default_datastore"]
        return self.backend(self.default_datastore)

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
            try:
                return DatastoreUri.parse(value)
            except DataPathError as exc:  # a value from the trigger form or the REST API: say which one
                raise DataPathError(
                    f"Task '{self.task_id}': DAG param '{port.parameter}' (input '{port.name}'): {exc}"
                ) from None
        outputs = self._producer_facts(context, port.step).get(xcom.OUTPUTS)
        if outputs is None:  # pushed by a version that kept the URIs only under the outputs' names
            uri = context["ti"].xcom_pull(task_ids=port.step, key=port.output)
        else:
            uri = outputs.get(port.output)
        if not uri:
            raise UserErrorException(
                f"Task '{self.task_id}': input '{port.name}' needs output '{port.output}' of task '{port.step}', "
                "which pushed none (did that task succeed in this run?)."
            )
        return DatastoreUri.parse(uri)

    def _producer_facts(self, context: Context, task_id: str) -> dict[str, Any]:
        """The facts the upstream step ``task_id`` pushed in this run (pulled once per producer)."""
        pulled = self._pulled_facts
        if pulled is None or pulled[0] is not context["ti"]:
            pulled = self._pulled_facts = (context["ti"], {})
        if task_id not in pulled[1]:
            pulled[1][task_id] = context["ti"].xcom_pull(task_ids=task_id, key=xcom.STEP_RUN) or {}
        return pulled[1][task_id]

    def push_facts(self, ti: Any, facts: dict[str, Any]) -> None:
        """Push the step run's facts, and keep them for the extra links Airflow asks for when the task ends."""
        ti.xcom_push(key=xcom.STEP_RUN, value=facts)
        self.step_run_facts = (ti.dag_id, ti.run_id, ti.task_id, ti.map_index), facts

    def parameter_environment(self, context: Context) -> dict[str, str]:
        """``AML_PARAMETER_<name>`` for each pipeline parameter of the step, from the run's params."""
        from aml_airflow_provider.runtime.contract import value_text

        params = context["params"]
        env = {}
        for name in self.pipeline_parameters:
            if name not in params:
                raise UserErrorException(f"Task '{self.task_id}': the DAG has no param '{name}'.")
            env[parameter_env_name(name)] = value_text(params[name])
        return env

    def script_environment(
        self,
        ti: Any,
        tracking_dir: Path,
        contract: Mapping[str, str],
        variables: Mapping[str, Any] = (),
        *,
        inherit: bool = True,
    ) -> dict[str, str]:
        """The environment of a step's process: v1's run context, the data/parameter contract and
        ``variables``, over the worker's environment without Airflow's secrets (``inherit``; a
        container gets its image's own instead)."""
        from aml_airflow_provider.runtime.contract import base_environment
        from aml_airflow_provider.runtime.tracking import TRACKING_DIR_VARIABLE

        return {
            **(base_environment() if inherit else {}),
            **{str(k): str(v) for k, v in dict(variables).items()},
            **contract,
            "AZUREML_RUN_ID": f"{ti.run_id}.{ti.task_id}",
            "AZUREML_ROOT_RUN_ID": ti.run_id,
            "AZUREML_EXPERIMENT_NAME": ti.dag_id,
            "AZUREML_ARM_WORKSPACE_NAME": self.workspace,
            "AZUREML_STEP_NAME": self.step_name,
            TRACKING_DIR_VARIABLE: str(tracking_dir),
            "PYTHONUNBUFFERED": "1",
        }

    def run_process(
        self, process: Any, should_stop: Callable[[], str | None], *, failure: Callable[[int], str]
    ) -> None:
        """Run the step's process to its end (``on_kill`` stops it); raise if it failed or was stopped.

        :param process: a :class:`~aml_airflow_provider.runtime.launcher.StepProcess` on the worker, or a
            step's :class:`~aml_airflow_provider.runtime.container.ContainerProcess`
        :param should_stop: polled; a reason stops the process (the run failed elsewhere)
        :param failure: the start of the error message, given the exit code
        """
        from airflow.sdk.exceptions import AirflowSkipException

        self._process = process
        result = process.run(should_stop)
        if result.stopped_because:
            raise AirflowSkipException(f"Step '{self.step_name}' stopped: {result.stopped_because}.")
        if result.returncode != 0:
            stream = "output" if process.tail_stdout else "stderr"
            tail = "\n".join(result.stderr_tail) or f"(no output on {stream})"
            raise StepRunError(f"{failure(result.returncode)} End of its {stream}:\n{tail}")

    def on_kill(self) -> None:
        if self._process is not None:
            self._process.terminate()

    def _failed_steps(self, ti: Any) -> list[str]:
        states = ti.get_task_states(dag_id=ti.dag_id, run_ids=[ti.run_id]).get(ti.run_id, {})
        return sorted(task for task, state in states.items() if state == "failed" and task != ti.task_id)

    def _continues_on_failure(self, context: Context) -> bool:
        """The step's ``continue_on_step_failure``, unless the run's submission overrode it."""
        conf = getattr(context.get("dag_run"), "conf", None) or {}
        return bool(conf.get(CONTINUE_CONF_KEY, self.continue_on_step_failure))

    def _stop_reason(self, ti: Any, continues: bool) -> str | None:
        """Why this step should stop now: the run was cancelled, or (without continue_on_step_failure)
        another step failed. ``None`` to go on."""
        if ti.get_dagrun_state(dag_id=ti.dag_id, run_id=ti.run_id) not in ("running", "queued"):
            return "the pipeline run was cancelled"
        if not continues:
            failed = self._failed_steps(ti)
            if failed:
                return f"{', '.join(failed)} failed and continue_on_step_failure is False"
        return None

    def _stop_if_run_failed(self, ti: Any, continues: bool) -> None:
        """v1's ``continue_on_step_failure=False``: do not start once another step of the run failed."""
        if continues:
            return
        failed = self._failed_steps(ti)
        if failed:
            from airflow.sdk.exceptions import AirflowSkipException

            raise AirflowSkipException(
                f"Step '{self.step_name}' not started: {', '.join(failed)} failed "
                "and continue_on_step_failure is False."
            )

    # -- execution --------------------------------------------------------------------------------
    def execute(self, context: Context) -> None:
        # Imported here: parsing a DAG file needs none of the run-time machinery.
        from aml_airflow_provider.runtime.reuse import ReuseIndex

        inputs, outputs = self._parse_ports()
        ti = context["ti"]
        self._stop_if_run_failed(ti, self._continues_on_failure(context))
        folder = f"{run_folder(ti.dag_id, ti.run_id)}/{self.task_id}"
        store = self._default_store()
        step_run_uri = DatastoreUri(store.name, f"{folder}/step-run")
        # One XCom of facts about the step run, pushed whatever happens (each push is an API call).
        facts: dict[str, Any] = {
            xcom.RECORD: str(step_run_uri),
            xcom.LOGS_URL: store.browse_url(f"{folder}/step-run/files/azureml-logs"),
        }
        work_dir = Path(tempfile.mkdtemp(prefix=f"aml-{self.task_id[:40]}-"))
        try:
            script_dir = work_dir / "src"
            snapshot_id = self.source_snapshot(script_dir, store)
            locations = {port.name: self._input_location(port, context) for port in inputs}
            parameter_env = self.parameter_environment(context)
            fingerprint = self._fingerprint(context, inputs, outputs, locations, parameter_env, snapshot_id)
            facts[xcom.FINGERPRINT] = fingerprint.id
            index = ReuseIndex(store)
            hit = self._reusable_run(context, index, fingerprint, store)
            if hit is not None:
                uris = {name: out["uri"] for name, out in hit["outputs"].items()}
                facts.update({xcom.REUSED_FROM: hit["step_run"]["id"], xcom.RECORD: hit["step_run"]["record"]})
            else:
                fresh = FreshRun(
                    context, store, index, fingerprint, work_dir, script_dir, inputs, outputs, locations,
                    parameter_env, folder, snapshot_id, step_run_uri, facts,
                )  # fmt: skip
                uris = self.run_fresh(fresh)
            facts[xcom.OUTPUTS_URL] = store.browse_url(folder)
            facts[xcom.OUTPUTS] = dict(uris)
            for name, uri in uris.items():
                ti.xcom_push(key=name, value=uri)
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
            self.push_facts(ti, facts)

    def run_fresh(self, run: FreshRun) -> dict[str, str]:
        """Run the step on this worker and record it for reuse; return its outputs' URIs.

        Steps whose work happens elsewhere override this (and may defer).
        """
        uris = self._run(
            run.context, run.store, run.work_dir, run.script_dir, run.inputs, run.outputs, run.locations,
            run.parameter_env, run.folder, run.snapshot_id,
        )  # fmt: skip
        self._record(run.index, run.fingerprint, uris, run.context["ti"], run.step_run_uri, run.snapshot_id)
        return uris

    def _run(
        self,
        context: Context,
        store: DatastoreBackend,
        work_dir: Path,
        script_dir: Path,
        inputs: list[InputSpec],
        outputs: list[OutputSpec],
        locations: Mapping[str, DatastoreUri],
        parameter_env: dict[str, str],
        folder: str,
        snapshot_id: str | None,
    ) -> dict[str, str]:
        """Run the step for real; publish its outputs, then (success or not) its step-run record."""
        from airflow.sdk.exceptions import AirflowSkipException

        from aml_airflow_provider.runtime.data import StepData

        ti = context["ti"]
        data = StepData(self.backend, work_dir, script_dir, self.log)
        tracking_dir = work_dir / "tracking"
        driver_log = work_dir / "driver_log.txt"
        status = "Failed"
        try:
            self.prepare_workdir(script_dir, work_dir, store=store, snapshot_id=snapshot_id)
            data_env = {data_env_name(p.name): str(data.prepare_input(p, locations[p.name])) for p in inputs}
            for out in outputs:
                location = DatastoreUri(out.datastore, f"{folder}/{out.name}")
                data_env[data_env_name(out.name)] = str(data.prepare_output(out, location))
            self.run_step(
                context,
                script_dir=script_dir,
                data_env=data_env,
                parameter_env=parameter_env,
                tracking_dir=tracking_dir,
                driver_log=driver_log,
                should_stop=lambda: self._stop_reason(ti, self._continues_on_failure(context)),
            )
            uris = data.publish()
            status = "Finished"
            return uris
        except AirflowSkipException:
            status = "Canceled"
            raise
        except StepRunError as exc:
            # Checked before discard() frees the staged output: a full datastore disk is named here.
            note = data.full_disk_note()
            if note:
                raise StepRunError(f"{exc}\n{note}") from None
            raise
        finally:
            data.discard()
            details = {"status": status, "snapshot": snapshot_id}
            self._keep_step_run(store, tracking_dir, script_dir, driver_log, work_dir / "step-run", folder, details)

    def _keep_step_run(
        self,
        store: DatastoreBackend,
        tracking_dir: Path,
        script_dir: Path,
        driver_log: Path,
        dest: Path,
        folder: str,
        details: dict[str, Any],
    ) -> None:
        """Publish metrics, tags, files and the driver log with the step run, whether it worked or not."""
        from aml_airflow_provider.runtime import tracking

        record = tracking.collect(tracking_dir, script_dir, driver_log, dest)
        tracking.write_details(
            record,
            {**details, "step": self.step_name, "task_id": self.task_id, "finished": datetime.now(UTC).isoformat()},
        )
        try:
            store.replace(record, f"{folder}/step-run")
        except Exception:
            # Losing the record must not turn a good step run into a failure, nor hide why a bad one failed.
            self.log.exception("Could not keep the step run's metrics and logs at %s", f"{folder}/step-run")

    def _fingerprint(
        self,
        context: Context,
        inputs: list[InputSpec],
        outputs: list[OutputSpec],
        locations: Mapping[str, DatastoreUri],
        parameter_env: dict[str, str],
        snapshot_id: str | None,
    ) -> Fingerprint:
        from aml_airflow_provider.runtime.reuse import Fingerprint, data_identity

        identities: dict[str, Any] = {}
        for port in inputs:
            if port.step is not None:
                producer = self._producer_facts(context, port.step).get(xcom.FINGERPRINT)
                identities[port.name] = {"producer": producer, "output": port.output, "mode": port.mode}
            else:
                location = locations[port.name]
                identity = data_identity(self.backend(location.datastore), location.path)
                identities[port.name] = {**identity, "uri": str(location), "mode": port.mode}
        components = {
            "kind": f"{self.kind}/{self.kind_version}",
            "version": self.version,
            "compute": self.compute_target,
            "snapshot": snapshot_id,
            "parameters": {name: context["params"][name] for name in self.pipeline_parameters},
            "inputs": identities,
            "outputs": [port_dict(o) for o in outputs],
            **self.fingerprint_components(parameter_env),
        }
        return Fingerprint(components)

    def _reusable_run(
        self, context: Context, index: ReuseIndex, fingerprint: Fingerprint, store: DatastoreBackend
    ) -> dict[str, Any] | None:
        """The index entry of an earlier run this step may and can reuse; else ``None``, and log why it runs."""
        from aml_airflow_provider.runtime.reuse import explain
        from aml_airflow_provider.runtime.snapshot import diff_stored

        ti = context["ti"]
        if not self.allow_reuse:
            self.log.info("Step '%s' runs: allow_reuse is False.", self.step_name)
            return None
        if context["params"].get(REGENERATE_PARAM):
            self.log.info("Step '%s' runs: regenerate_outputs is set for this run.", self.step_name)
            return None
        hit = index.lookup(fingerprint.id)
        if hit is not None:
            gone = [name for name, out in hit["outputs"].items() if not self._output_still_there(out)]
            if not gone:
                self.log.info("reused step run %s (fingerprint %s)", hit["step_run"]["id"], fingerprint.id)
                return hit
            self.log.info(
                "Step '%s' runs: step run %s had the same fingerprint, but its outputs %s are gone.",
                self.step_name,
                hit["step_run"]["id"],
                ", ".join(gone),
            )
            return None
        previous = index.latest(ti.dag_id, ti.task_id)
        reasons = explain(
            previous and previous["components"], fingerprint.components, lambda old, new: diff_stored(store, old, new)
        )
        self.log.info("Step '%s' runs (fingerprint %s): %s", self.step_name, fingerprint.id, "; ".join(reasons))
        return None

    def output_file_count(self, location: DatastoreUri) -> int:
        """How many files an output holds (recorded for reuse: an output whose files are gone is not reused)."""
        return len(self.backend(location.datastore).list_files(location.path))

    def _output_still_there(self, output: Mapping[str, Any]) -> bool:
        location = DatastoreUri.parse(output["uri"])
        return output["files"] == 0 or bool(self.backend(location.datastore).list_files(location.path))

    def _record(
        self,
        index: ReuseIndex,
        fingerprint: Fingerprint,
        uris: Mapping[str, str],
        ti: Any,
        step_run_uri: DatastoreUri,
        snapshot_id: str | None,
    ) -> None:
        outputs = {}
        for name, uri in uris.items():
            location = DatastoreUri.parse(uri)
            outputs[name] = {"uri": uri, "files": self.output_file_count(location)}
        entry = {
            "fingerprint": fingerprint.id,
            "components": fingerprint.components,
            "snapshot": snapshot_id,
            "outputs": outputs,
            "step_run": {
                "id": f"{ti.run_id}.{ti.task_id}",
                "dag_id": ti.dag_id,
                "run_id": ti.run_id,
                "task_id": ti.task_id,
                "record": str(step_run_uri),
            },
            "created": datetime.now(UTC).isoformat(),
        }
        index.record(entry, dag_id=ti.dag_id, task_id=ti.task_id, reusable=self.allow_reuse)

    # -- what subclasses provide ------------------------------------------------------------------
    def source_snapshot(self, script_dir: Path, store: DatastoreBackend) -> str | None:
        """The id of the source snapshot the step runs from (part of the fingerprint), if it has one.

        It may fill ``script_dir`` on the way (when it takes the snapshot itself).
        """
        return None

    def prepare_workdir(self, script_dir: Path, work_dir: Path, *, store: DatastoreBackend, snapshot_id: str | None):
        """Fill the script's working directory before the step runs (not done for a reused step)."""
        script_dir.mkdir(parents=True, exist_ok=True)

    def fingerprint_components(self, parameter_env: dict[str, str]) -> dict[str, Any]:
        """The kind-specific part of the fingerprint (what the step runs, with this run's values)."""
        return {}

    @abstractmethod
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
        """Do the step's work; raise on failure.

        :param script_dir: the working directory (with the source snapshot)
        :param data_env: ``AZUREML_DATAREFERENCE_<port>`` -> local path, for every port
        :param parameter_env: ``AML_PARAMETER_<name>`` -> value, for the pipeline parameters
        :param tracking_dir: where ``Run.get_context()`` records metrics, tags and files
        :param driver_log: where the step's own output goes (kept with the step run)
        :param should_stop: call now and then; a reason means stop (and raise) now
        """
