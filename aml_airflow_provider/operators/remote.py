"""The shared body of steps whose work runs in a remote service (Databricks, Data Lake Analytics).

A remote step run goes: hand the job its data locations (outputs into emptied folders) → submit, or
re-attach to the job an earlier try left running → push the job's id and page → wait, deferring to a
trigger or polling on the worker → keep the job's log with the step run → fail with the job's own
error, or record the outputs for reuse and hand them on.
"""

from __future__ import annotations

import tempfile
import time
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import conf

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.base import AmlStepOperator, FreshRun

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import BaseTrigger

    from aml_airflow_provider.storage.base import DatastoreBackend


@dataclass(frozen=True)
class JobOutcome:
    """How a remote job ended, as the step run records it.

    :param succeeded: the job did its work
    :param summary: one line for the task error when it did not (state, message, the job's errors)
    :param log_lines: what goes in the step run's driver log
    :param xcom: extra XComs to push (a notebook's exit value, say)
    :param details: extra facts for the step run's ``details.json``
    """

    succeeded: bool
    summary: str
    log_lines: list[str] = field(default_factory=list)
    xcom: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


class RemoteStepOperator(AmlStepOperator):
    """Base of operators that submit a job to a service and wait for it.

    Subclasses say how to reach the data from the service (:meth:`remote_uri`), how to start the job
    (:meth:`start_job`), how to ask its state (:meth:`job_state`), how to read its end
    (:meth:`job_outcome`, :meth:`outcome_from_event`), cancel it (:meth:`cancel_job`) and which trigger
    waits for it (:meth:`job_trigger`).

    :param deferrable: wait in the triggerer instead of a worker slot (default: ``[operators] default_deferrable``)
    :param polling_period_seconds: how often to ask for the job's state (default: the ``[aml]`` setting
        named by :attr:`poll_config_key`, else 30)
    """

    #: XCom keys of the job's id and of its page.
    job_id_key: ClassVar[str] = "job_id"
    job_url_key: ClassVar[str] = "job_url"
    #: What the service calls a job, for messages ("Databricks run").
    job_noun: ClassVar[str] = "job"
    #: ``[aml]`` option with the deployment's polling period (pipelines carry none: v1 had none).
    poll_config_key: ClassVar[str] = "remote_poll_seconds"

    _shared_base: ClassVar[bool] = True

    def __init__(
        self,
        *,
        polling_period_seconds: float | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.polling_period_seconds = polling_period_seconds
        self.deferrable = deferrable
        self.job_id: Any = None

    @property
    def poll_seconds(self) -> float:
        if self.polling_period_seconds is not None:
            return float(self.polling_period_seconds)
        return conf.getfloat("aml", self.poll_config_key, fallback=30.0)

    # -- what subclasses provide ------------------------------------------------------------------
    def runs_remotely(self) -> bool:
        """``False`` to run this execution on the worker instead (:meth:`AmlStepOperator.run_fresh`)."""
        return True

    def run_step(self, context: Context, **kwargs: Any) -> None:
        """Only steps that can also run on the worker (see :meth:`runs_remotely`) implement this."""
        raise NotImplementedError(f"{type(self).__name__} runs its steps in a remote service only.")

    @abstractmethod
    def remote_uri(self, backend: DatastoreBackend, path: str) -> str:
        """A datastore location as the service names it."""

    @abstractmethod
    def start_job(self, run: FreshRun, locations: Mapping[str, str]) -> tuple[Any, str]:
        """Submit the job, or re-attach to the one an earlier try left running; return (job id, page URL)."""

    @abstractmethod
    def job_state(self, job_id: Any) -> tuple[bool, str]:
        """(has it ended, its state in words)."""

    @abstractmethod
    def job_outcome(self, job_id: Any, state: Mapping[str, Any]) -> JobOutcome:
        """How the ended job went (it is asked once, after it ended)."""

    @abstractmethod
    def outcome_from_event(self, event: Mapping[str, Any], state: Mapping[str, Any]) -> JobOutcome:
        """How the job went, from the trigger's event."""

    @abstractmethod
    def job_trigger(self, job_id: Any, job_url: str) -> BaseTrigger:
        """The trigger that waits for the job."""

    @abstractmethod
    def cancel_job(self, job_id: Any) -> None:
        """Ask the service to stop the job."""

    # -- the run ----------------------------------------------------------------------------------
    def run_fresh(self, run: FreshRun) -> dict[str, str]:
        if not self.runs_remotely():
            return super().run_fresh(run)
        ti = run.context["ti"]
        locations, uris = {}, {}
        for port in run.inputs:
            location = run.locations[port.name]
            locations[port.name] = self.remote_uri(self.backend(location.datastore), location.path)
        for port in run.outputs:
            location = run.output_location(port)
            backend = self.backend(location.datastore)
            # A dead attempt's files must not mix with this run's: the job writes into an emptied folder.
            backend.delete_prefix(location.path)
            locations[port.name] = self.remote_uri(backend, location.path)
            uris[port.name] = str(location)
        job_id, job_url = self.start_job(run, locations)
        self.job_id = job_id
        ti.xcom_push(key=self.job_id_key, value=job_id)
        ti.xcom_push(key=self.job_url_key, value=job_url)
        self.log.info("Step '%s': %s %s: %s", self.step_name, self.job_noun, job_id, job_url)
        state = {
            "job_id": job_id,
            "job_url": job_url,
            "uris": uris,
            "fingerprint": dict(run.fingerprint.components),
            "folder": run.folder,
            "snapshot_id": run.snapshot_id,
            "step_run_uri": str(run.step_run_uri),
            "facts": dict(run.facts),
        }
        if self.deferrable:
            self.defer(
                trigger=self.job_trigger(job_id, job_url), method_name="execute_complete", kwargs={"state": state}
            )
        self._wait(job_id, run.context)
        return self._complete(run.context, state, self.job_outcome(job_id, state))

    def _wait(self, job_id: Any, context: Context) -> None:
        """Poll until the job ends; cancel it and stop if the pipeline run stops meanwhile."""
        ti = context["ti"]
        while True:
            ended, words = self.job_state(job_id)
            if ended:
                return
            reason = self._stop_reason(ti, self._continues_on_failure(context))
            if reason:
                self.cancel_job(job_id)
                from airflow.sdk.exceptions import AirflowSkipException

                raise AirflowSkipException(
                    f"Step '{self.step_name}' stopped ({reason}); {self.job_noun} {job_id} cancelled."
                )
            self.log.info("%s %s: %s", self.job_noun, job_id, words)
            time.sleep(self.poll_seconds)

    def execute_complete(self, context: Context, event: dict[str, Any], state: dict[str, Any]) -> None:
        """Resume after the trigger reported the job's end."""
        if not event:
            raise StepRunError(f"Step '{self.step_name}': the trigger ended without an event.")
        self.job_id = state["job_id"]
        uris = self._complete(context, state, self.outcome_from_event(event, state))
        self._push_outputs(context["ti"], uris, state)

    def _complete(self, context: Context, state: Mapping[str, Any], outcome: JobOutcome) -> dict[str, str]:
        """Keep the job's log with the step run; fail with its error, or record the outputs for reuse."""
        from aml_airflow_provider.runtime.reuse import Fingerprint, ReuseIndex
        from aml_airflow_provider.uris import DatastoreUri

        ti = context["ti"]
        for key, value in outcome.xcom.items():
            ti.xcom_push(key=key, value=value)
        store = self._default_store()
        lines = [f"{self.job_noun} {state['job_id']}: {state['job_url']}", *outcome.log_lines]
        with tempfile.TemporaryDirectory(prefix="aml-remote-") as tmp:
            work = Path(tmp)
            driver_log = work / "driver_log.txt"
            driver_log.write_text("\n".join(lines) + "\n", encoding="utf-8")
            details = {
                "status": "Finished" if outcome.succeeded else "Failed",
                "snapshot": state["snapshot_id"],
                "remote_job": {"id": state["job_id"], "url": state["job_url"]},
                **outcome.details,
            }
            self._keep_step_run(
                store, work / "tracking", work / "src", driver_log, work / "step-run", state["folder"], details
            )
        if not outcome.succeeded:
            raise StepRunError(
                f"Step '{self.step_name}': {self.job_noun} {state['job_id']} {outcome.summary}. See {state['job_url']}"
            )
        for name, uri in state["uris"].items():
            location = DatastoreUri.parse(uri)
            if not self.backend(location.datastore).list_files(location.path):
                self.log.warning("Step '%s' wrote nothing to output '%s' (%s).", self.step_name, name, uri)
        self._record(
            ReuseIndex(store),
            Fingerprint(state["fingerprint"]),
            state["uris"],
            ti,
            DatastoreUri.parse(state["step_run_uri"]),
            state["snapshot_id"],
        )
        return dict(state["uris"])

    def _push_outputs(self, ti: Any, uris: Mapping[str, str], state: Mapping[str, Any]) -> None:
        from aml_airflow_provider import xcom

        facts = {
            **state["facts"],
            xcom.OUTPUTS_URL: self._default_store().browse_url(state["folder"]),
            xcom.OUTPUTS: dict(uris),
        }
        for name, uri in uris.items():
            ti.xcom_push(key=name, value=uri)
        self.push_facts(ti, facts)

    def on_kill(self) -> None:
        super().on_kill()
        if self.job_id is not None and self.runs_remotely():
            self.log.info("Cancelling %s %s.", self.job_noun, self.job_id)
            self.cancel_job(self.job_id)
