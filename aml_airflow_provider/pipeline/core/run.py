"""``PipelineRun``, ``StepRun`` and ``StepRunOutput``: a DAG run, its task instances, and their outputs."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aml_airflow_provider import xcom
from aml_airflow_provider.exceptions import ActivityFailedException, UserErrorException
from aml_airflow_provider.pipeline.core.graph import PortDataReference
from aml_airflow_provider.runtime.tracking import DRIVER_LOG, TAGS_FILE, StepRunRecord, aggregate
from aml_airflow_provider.spec import RESERVED_PARAMETERS, TAGS_CONF_KEY, StepSpec
from aml_airflow_provider.storage.base import local_file_for
from aml_airflow_provider.uris import DatastoreUri

if TYPE_CHECKING:
    from aml_airflow_provider.core.experiment import Experiment
    from aml_airflow_provider.core.workspace import Workspace
    from aml_airflow_provider.deployment.base import TaskRecord
    from aml_airflow_provider.spec import PipelineSpec

#: Airflow DAG-run states as v1 pipeline-run statuses.
RUN_STATUS = {"queued": "NotStarted", "running": "Running", "success": "Finished", "failed": "Failed"}
#: Airflow task-instance states as v1 step-run statuses.
STEP_STATUS = {
    None: "NotStarted",
    "none": "NotStarted",
    "scheduled": "Queued",
    "queued": "Queued",
    "running": "Running",
    "deferred": "Running",
    "up_for_retry": "Running",
    "up_for_reschedule": "Running",
    "restarting": "Running",
    "success": "Finished",
    "failed": "Failed",
    "upstream_failed": "Canceled",
    "removed": "Canceled",
    "skipped": "Canceled",  # held back by continue_on_step_failure=False
}
TERMINAL = {"Finished", "Failed", "Canceled"}
#: The DAG-run note that marks a cancelled run.
CANCELED_NOTE = "Canceled with PipelineRun.cancel()"


def _state_name(state: str | None) -> str | None:
    # Airflow's enums print as "TaskInstanceState.SUCCESS" in some versions; keep the value.
    if state is None:
        return None
    return state.rsplit(".", 1)[-1].lower()


def _step_status(ti: TaskRecord | None) -> str:
    return STEP_STATUS.get(_state_name(ti.state) if ti else None, "Running")


class PipelineRun:
    """A run of a pipeline: one Airflow DAG run of the experiment's DAG.

    :param experiment: the experiment
    :param run_id: the DAG run id
    """

    def __init__(
        self, experiment: Experiment, run_id: str, _spec: PipelineSpec | None = None, _dag_id: str | None = None
    ) -> None:
        self.experiment = experiment
        self._run_id = run_id
        self._spec = _spec
        #: The DAG the run belongs to: the experiment's, or a published pipeline's.
        self.dag_id = _dag_id or experiment.dag_id

    @staticmethod
    def get(workspace: Workspace, run_id: str) -> PipelineRun:
        """The run with this id (the newest, if several experiments have one)."""
        from aml_airflow_provider.core.experiment import Experiment

        runs = workspace._deployment.find_dag_runs(run_id)
        if not runs:
            raise UserErrorException(f"No pipeline run with id {run_id!r} in workspace '{workspace.name}'.")
        dag_id = runs[0].dag_id
        document = workspace._deployment.read_dag(dag_id)
        experiment = (document.meta.get("experiment") if document else None) or dag_id
        return PipelineRun(Experiment(workspace, experiment), run_id, _dag_id=dag_id)

    @property
    def id(self) -> str:
        return self._run_id

    @property
    def workspace(self) -> Workspace:
        return self.experiment.workspace

    @property
    def _deployment(self):
        return self.workspace._deployment

    @property
    def spec(self) -> PipelineSpec:
        """The spec the experiment's DAG runs."""
        if self._spec is None:
            document = self._deployment.read_dag(self.dag_id)
            if document is None or document.spec is None:
                raise UserErrorException(f"The pipeline of run {self._run_id!r} ({self.dag_id}) is no longer known.")
            self._spec = document.spec
        return self._spec

    def _step_spec(self, task_id: str) -> StepSpec:
        try:
            return self.spec.step(task_id)
        except KeyError:
            # A run of an earlier version of the experiment's DAG: its task is no longer in the spec.
            return StepSpec(name=task_id, task_id=task_id, kind="unknown", kind_version=0, config={})

    def _record(self):
        record = self._deployment.dag_run(self.dag_id, self._run_id)
        if record is None:
            raise UserErrorException(f"Pipeline run {self._run_id!r} of experiment '{self.experiment.name}' not found.")
        return record

    def get_status(self) -> str:
        """``NotStarted``, ``Running``, ``Finished``, ``Failed`` or ``Canceled`` (v1 words)."""
        record = self._record()
        if (record.note or "").startswith(CANCELED_NOTE):
            return "Canceled"
        return RUN_STATUS.get(_state_name(record.state) or "queued", "Running")

    def cancel(self) -> None:
        """Cancel the run: steps not started are skipped, running ones stop (with their child processes)."""
        self._deployment.cancel_run(self.dag_id, self._run_id, CANCELED_NOTE)

    def get_metrics(self) -> dict[str, dict[str, Any]]:
        """Each step's metrics, by step name (see :meth:`StepRun.get_metrics`)."""
        return {step.name: step.get_metrics() for step in self.get_steps()}

    def get_pipeline_metrics(self) -> dict[str, Any]:
        """What steps logged on the pipeline run itself (``Run.get_context().parent.log(...)``)."""
        from aml_airflow_provider.runtime.tracking import aggregate

        records = [r for step in self.get_steps() for r in step._record_reader().metric_records()]
        return aggregate(records, scope="pipeline")

    def get_details(self) -> dict[str, Any]:
        record = self._record()
        return {
            "runId": self._run_id,
            "experiment": self.experiment.name,
            "status": self.get_status(),
            "startTimeUtc": record.start_date.isoformat() if record.start_date else None,
            "endTimeUtc": record.end_date.isoformat() if record.end_date else None,
            "parameters": {k: v for k, v in record.conf.items() if k not in RESERVED_PARAMETERS},
            "tags": record.conf.get(TAGS_CONF_KEY, {}),
        }

    def get_tags(self) -> dict[str, str]:
        return dict(self._record().conf.get(TAGS_CONF_KEY, {}))

    def get_steps(self) -> list[StepRun]:
        """The step runs that have started or finished, in start order."""
        steps = []
        for ti in self._deployment.task_instances(self.dag_id, self._run_id):
            if _step_status(ti) in ("NotStarted", "Queued"):
                continue
            steps.append(StepRun(self, self._step_spec(ti.task_id), ti))
        return steps

    get_children = get_steps

    def find_step_run(self, name: str) -> list[StepRun]:
        """Step runs of steps named ``name``."""
        return [s for s in self.get_steps() if s.name == name]

    def wait_for_completion(
        self, show_output: bool = True, timeout_seconds: float = sys.maxsize, raise_on_error: bool = True
    ) -> str:
        """Wait until the run ends; return its status.

        :param show_output: print each step's status and outputs
        :param timeout_seconds: give up waiting after this long
        :param raise_on_error: raise :class:`ActivityFailedException` if the run failed
        """
        deadline = time.monotonic() + timeout_seconds
        status = self.get_status()
        while status not in TERMINAL and time.monotonic() < deadline:
            time.sleep(1)
            status = self.get_status()
        if show_output:
            print(self.summary(), flush=True)
        if status == "Failed" and raise_on_error:
            # One read of the task instances; StepRun.get_status() would re-read them per step.
            failed = [s.name for s in self.get_steps() if _step_status(s._ti) == "Failed"]
            raise ActivityFailedException(
                f"Pipeline run {self._run_id} failed (failed steps: {', '.join(failed) or 'none'}). "
                "See the step logs in the Airflow task logs."
            )
        return status

    def summary(self) -> str:
        """A readable table of steps, statuses and outputs."""
        lines = [f"PipelineRun {self._run_id} (experiment '{self.experiment.name}'): {self.get_status()}"]
        for ti in self._deployment.task_instances(self.dag_id, self._run_id):
            step = StepRun(self, self._step_spec(ti.task_id), ti)
            xcoms = step._xcoms()  # one read per step serves both the facts and the outputs
            reused_from = step._facts(xcoms).get(xcom.REUSED_FROM)
            reused = f" (reused step run {reused_from})" if reused_from else ""
            lines.append(f"  StepRun {step.name!r}: {_step_status(ti)}{reused}")
            for name, uri in step._output_uris(xcoms).items():
                lines.append(f"    output {name}: {uri}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"PipelineRun(experiment={self.experiment.name!r}, id={self._run_id!r})"


class StepRun:
    """A run of one step: an Airflow task instance."""

    def __init__(self, pipeline_run: PipelineRun, step: StepSpec, record: TaskRecord | None = None) -> None:
        self.pipeline_run = pipeline_run
        self._step = step
        self._ti = record

    @property
    def name(self) -> str:
        return self._step.name

    @property
    def task_id(self) -> str:
        return self._step.task_id

    @property
    def id(self) -> str:
        return f"{self.pipeline_run.id}.{self._step.task_id}"

    @property
    def parent(self) -> PipelineRun:
        return self.pipeline_run

    def _record(self) -> TaskRecord | None:
        run = self.pipeline_run
        for ti in run._deployment.task_instances(run.dag_id, run.id):
            if ti.task_id == self._step.task_id:
                self._ti = ti
        return self._ti

    def get_status(self) -> str:
        return _step_status(self._record())

    def get_details(self) -> dict[str, Any]:
        ti = self._record()
        properties = {"azureml.fingerprint": self._facts().get(xcom.FINGERPRINT)}
        if self.is_reused:
            properties["azureml.reusedrunid"] = self.reused_run_id
        return {
            "runId": self.id,
            "name": self.name,
            "status": self.get_status(),
            "taskId": self.task_id,
            "tryNumber": ti.try_number if ti else 0,
            "startTimeUtc": ti.start_date.isoformat() if ti and ti.start_date else None,
            "endTimeUtc": ti.end_date.isoformat() if ti and ti.end_date else None,
            "properties": properties,
        }

    def get_details_with_logs(self) -> dict[str, Any]:
        """:meth:`get_details` plus ``logFiles``: name -> content of each log kept with the step run."""
        reader = self._record_reader()
        logs = {
            name: reader.read_text(f"files/{name}") for name in reader.file_names() if name.startswith("azureml-logs/")
        }
        return {**self.get_details(), "logFiles": logs}

    def _xcoms(self) -> dict[str, Any]:
        run = self.pipeline_run
        return run._deployment.xcoms(run.dag_id, run.id, self._step.task_id)

    def _facts(self, xcoms: dict[str, Any] | None = None) -> dict[str, Any]:
        facts = (self._xcoms() if xcoms is None else xcoms).get(xcom.STEP_RUN)
        return facts if isinstance(facts, dict) else {}

    def _output_uris(self, xcoms: dict[str, Any] | None = None) -> dict[str, str]:
        xcoms = self._xcoms() if xcoms is None else xcoms
        return {o.name: xcoms[o.name] for o in self._step.outputs if isinstance(xcoms.get(o.name), str)}

    # -- reuse and tracking -----------------------------------------------------------------------
    @property
    def reused_run_id(self) -> str | None:
        """The step run whose results this one reused, or ``None`` if it ran."""
        return self._facts().get(xcom.REUSED_FROM)

    @property
    def is_reused(self) -> bool:
        return self.reused_run_id is not None

    def _record_reader(self) -> StepRunRecord:
        from aml_airflow_provider.core.datastore import Datastore

        uri = self._facts().get(xcom.RECORD)
        if not uri:
            return StepRunRecord(None, "")  # the step never started: nothing was recorded
        location = DatastoreUri.parse(uri)
        return StepRunRecord(Datastore(self.pipeline_run.workspace, location.datastore)._backend, location.path)

    def get_metrics(self, name: str | None = None) -> dict[str, Any]:
        """What the script logged with ``Run.get_context().log(...)`` (a reused step: the original run's)."""
        metrics = aggregate(self._record_reader().metric_records())
        if name is None:
            return metrics
        return {name: metrics[name]} if name in metrics else {}

    def get_tags(self) -> dict[str, str]:
        text = self._record_reader().read_text(TAGS_FILE)
        return json.loads(text) if text else {}

    def get_file_names(self) -> list[str]:
        """Files kept with the step run: its driver log, ``outputs/...`` and uploaded files."""
        return self._record_reader().file_names()

    def download_file(self, name: str, output_file_path: str | os.PathLike[str] | None = None) -> str:
        """Download one kept file (``outputs/model.pkl``); return where it was written."""
        target = Path(output_file_path) if output_file_path else Path(Path(name).name)
        if target.is_dir():
            target = target / Path(name).name
        self._record_reader().download(name.removeprefix("./"), target)
        return str(target)

    def download_files(
        self, prefix: str | None = None, output_directory: str | os.PathLike[str] | None = None
    ) -> list[str]:
        """Download the kept files whose names start with ``prefix`` into ``output_directory``."""
        reader = self._record_reader()
        folder = Path(output_directory or ".")
        names = [n for n in reader.file_names() if prefix is None or n.startswith(prefix.removeprefix("./"))]
        # Names come from a listing of the datastore: each must stay inside the folder asked for.
        targets = [local_file_for(folder, n, source=f"the files of step run '{self.name}'") for n in names]
        for name, target in zip(names, targets, strict=True):
            reader.download(name, target)
        return [str(t) for t in targets]

    def get_job_log(self) -> str:
        """The driver log: what the script printed, after v1's argument-expansion lines."""
        return self._record_reader().read_text(f"files/{DRIVER_LOG}") or ""

    get_driver_log = get_job_log

    @property
    def snapshot_id(self) -> str | None:
        """The source snapshot the step ran from (a reused step: the original run's)."""
        return self._record_reader().details().get("snapshot")

    def restore_snapshot(self, path: str | os.PathLike[str] | None = None) -> str:
        """Write the exact code this step ran into ``path`` (default: a folder named after the snapshot)."""
        from aml_airflow_provider.core.datastore import Datastore
        from aml_airflow_provider.runtime import snapshot

        snapshot_id = self.snapshot_id
        if snapshot_id is None:
            raise UserErrorException(f"Step run '{self.name}' recorded no source snapshot.")
        store = Datastore(self.pipeline_run.workspace, self.pipeline_run.spec.default_datastore)._backend
        target = Path(path or snapshot_id)
        with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
            snapshot.materialize(snapshot.load(snapshot_id, store, Path(tmp)), store, target)
        return str(target)

    def get_outputs(self) -> dict[str, StepRunOutput]:
        """Outputs this step run produced, by name."""
        return {name: StepRunOutput(self, name, uri) for name, uri in self._output_uris().items()}

    def get_output(self, name: str) -> StepRunOutput:
        outputs = self.get_outputs()
        if name not in outputs:
            declared = [o.name for o in self._step.outputs]
            raise UserErrorException(
                f"Step '{self.name}' has no output '{name}' in run {self.pipeline_run.id} "
                f"(declared outputs: {', '.join(declared) or 'none'}; status {self.get_status()})."
            )
        return outputs[name]

    def get_output_data(self, name: str) -> PortDataReference:
        """Where the output ``name`` was written."""
        return self.get_output(name).get_port_data_reference()

    def __repr__(self) -> str:
        return f"StepRun(name={self.name!r}, id={self.id!r})"


class StepRunOutput:
    """One output of a step run."""

    def __init__(self, step_run: StepRun, name: str, uri: str) -> None:
        self.step_run = step_run
        self.name = name
        self.uri = uri

    def get_port_data_reference(self) -> PortDataReference:
        from aml_airflow_provider.core.datastore import Datastore

        location = DatastoreUri.parse(self.uri)
        workspace = self.step_run.pipeline_run.workspace
        return PortDataReference(Datastore(workspace, location.datastore), location.path, self.name)

    def __repr__(self) -> str:
        return f"StepRunOutput(name={self.name!r}, uri={self.uri!r})"
