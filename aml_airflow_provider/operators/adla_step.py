"""``AdlaStepOperator``: an AdlaStep as a U-SQL job on a Data Lake Analytics account (job API 2016-11-01)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

from aml_airflow_provider.exceptions import StepRunError
from aml_airflow_provider.operators.base import AmlStepOperator, FreshRun
from aml_airflow_provider.operators.remote import JobOutcome, RemoteStepOperator
from aml_airflow_provider.runtime.contract import PARAMETER_TOKEN, expand

if TYPE_CHECKING:
    from airflow.models.taskinstancekey import TaskInstanceKey
    from airflow.sdk import BaseOperator

    from aml_airflow_provider.hooks.adla import AdlaHook
    from aml_airflow_provider.storage.base import DatastoreBackend

XCOM_JOB_ID_KEY = "adla_job_id"
XCOM_JOB_URL_KEY = "adla_job_url"
#: Job ids are derived from the task instance and try, in this namespace.
_JOB_ID_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4f8b-9a57-3c0c2b8e0a11")
_PUBLIC_ENDPOINT_SUFFIX = ".azuredatalakeanalytics.net"


class AdlaJobLink(BaseOperatorLink):
    """The Data Lake Analytics job of the step (pushed when the job was submitted)."""

    name = "Data Lake Analytics job"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=XCOM_JOB_URL_KEY, ti_key=ti_key) or ""


def job_id_for(dag_id: str, run_id: str, task_id: str, map_index: int, try_number: int) -> str:
    """The job id of one try of one task instance: the same on every worker, so a retry can find it."""
    return str(uuid.uuid5(_JOB_ID_NAMESPACE, f"{dag_id}\n{run_id}\n{task_id}\n{map_index}\n{try_number}"))


class AdlaStepOperator(RemoteStepOperator):
    """Run an AdlaStep: substitute ``@@name@@`` placeholders in the U-SQL script, submit it as a job, wait.

    The job id is derived from the task instance and try number. A try first looks for the jobs of the
    earlier tries: one still running (its worker died) is re-attached to, one that succeeded is adopted,
    so a job is never submitted twice. A failed job's errors (message, line, severity) are in the task
    error; ``on_kill`` cancels the job.

    :param script_name: the U-SQL script, relative to ``source_directory`` (templated)
    :param source_directory: the folder holding the script; a snapshot of it is taken (templated)
    :param snapshot: id of a stored source snapshot to run from (set by ``submit`` and ``publish``)
    :param script_params: ``{name: value}`` for ``@@name@@`` (``$AML_PARAMETER_x`` resolved) (templated)
    :param degree_of_parallelism: the job's analytics units
    :param priority: the job's priority
    :param runtime_version: the U-SQL runtime
    :param adla_conn_id: the account's connection (default: the one of ``compute_target``)
    :param kwargs: see :class:`~aml_airflow_provider.operators.remote.RemoteStepOperator` (``deferrable``,
        ``polling_period_seconds``; default ``[aml] adla_poll_seconds``) and
        :class:`~aml_airflow_provider.operators.base.AmlStepOperator`
    """

    template_fields: Sequence[str] = (
        *AmlStepOperator.template_fields,
        "script_name",
        "source_directory",
        "script_params",
        "adla_conn_id",
    )
    template_fields_renderers = {**AmlStepOperator.template_fields_renderers, "script_params": "json"}
    operator_extra_links = (*AmlStepOperator.operator_extra_links, AdlaJobLink())
    ui_color = "#e5d4f7"
    job_id_key = XCOM_JOB_ID_KEY
    job_url_key = XCOM_JOB_URL_KEY
    job_noun = "Data Lake Analytics job"
    poll_config_key = "adla_poll_seconds"
    kind = "AdlaStep"
    kind_version = 1

    def __init__(
        self,
        *,
        script_name: str,
        source_directory: str,
        snapshot: str | None = None,
        script_params: Mapping[str, str] | None = None,
        degree_of_parallelism: int | None = None,
        priority: int | None = None,
        runtime_version: str | None = None,
        adla_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.script_name = script_name
        self.source_directory = source_directory
        self.snapshot = snapshot
        self.script_params = dict(script_params or {})
        self.degree_of_parallelism = degree_of_parallelism
        self.priority = priority
        self.runtime_version = runtime_version
        self.adla_conn_id = adla_conn_id
        self._hook: AdlaHook | None = None

    @classmethod
    def kwargs_from_config(cls, step: Any) -> dict[str, Any]:
        config = step.config
        return {
            "script_name": config["script_name"],
            "source_directory": config["source_directory"],
            "snapshot": config.get("snapshot"),
            "script_params": dict(config["params"]),
            "degree_of_parallelism": config.get("degree_of_parallelism"),
            "priority": config.get("priority"),
            "runtime_version": config.get("runtime_version"),
        }

    @property
    def conn_id(self) -> str:
        from aml_airflow_provider.deployment.base import compute_conn_id

        if self.adla_conn_id:
            return self.adla_conn_id
        if not self.compute_target:
            raise StepRunError(f"Step '{self.step_name}': no compute_target or adla_conn_id names the account.")
        return compute_conn_id(self.workspace, self.compute_target)

    @property
    def hook(self) -> AdlaHook:
        """One hook per operator object, so its token serves every request until it is due for refresh."""
        from aml_airflow_provider.hooks.adla import AdlaHook

        if self._hook is None:
            self._hook = AdlaHook(self.conn_id)
        return self._hook

    # -- the source -------------------------------------------------------------------------------
    def source_snapshot(self, script_dir: Path, store: DatastoreBackend) -> str | None:
        from aml_airflow_provider.runtime import snapshot

        return snapshot.for_step(self.snapshot, Path(self.source_directory), script_dir, store)

    def fingerprint_components(self, parameter_env: dict[str, str]) -> dict[str, Any]:
        where = f"Step '{self.step_name}'"
        return {
            "script": self.script_name,
            "params": {
                k: expand(str(v), parameter_env, where=where, only=PARAMETER_TOKEN)
                for k, v in self.script_params.items()
            },
            "job": [self.degree_of_parallelism, self.priority, self.runtime_version],
        }

    def script_text(self, run: FreshRun, locations: Mapping[str, str]) -> str:
        """The script with every ``@@name@@`` replaced; a placeholder without a value is an error naming it."""
        from aml_airflow_provider.pipeline.steps.adla_step import PLACEHOLDER
        from aml_airflow_provider.runtime import snapshot

        snapshot.fill_script_dir(self.snapshot, run.script_dir, run.store, run.work_dir)
        path = run.script_dir / self.script_name
        if not path.is_file():
            raise StepRunError(
                f"Step '{self.step_name}': script {self.script_name!r} is not in source snapshot {run.snapshot_id} "
                "(is it ignored by .amlignore/.gitignore?)."
            )
        where = f"Step '{self.step_name}' params"
        values = {k: expand(str(v), run.parameter_env, where=where) for k, v in self.script_params.items()}
        values.update(locations)
        text = path.read_text(encoding="utf-8")
        missing = sorted({name for name in PLACEHOLDER.findall(text) if name not in values})
        if missing:
            raise StepRunError(
                f"Step '{self.step_name}': {self.script_name} uses @@{missing[0]}@@, which has no value (no input, "
                f"output or params entry of that name){'; also ' + ', '.join(missing[1:]) if missing[1:] else ''}."
            )
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

    # -- the job ----------------------------------------------------------------------------------
    def remote_uri(self, backend: DatastoreBackend, path: str) -> str:
        return backend.adla_uri(path)

    def job_url(self, job_id: str) -> str:
        hook = self.hook
        if hook.endpoint.endswith(_PUBLIC_ENDPOINT_SUFFIX):
            return (
                "https://portal.azure.com/#blade/Microsoft_Azure_DataLakeAnalytics/SqlIpJobViewBlade/"
                f"accountName/{hook.account_name}/jobId/{job_id}"
            )
        return f"{hook.endpoint}/jobs/{job_id}"

    def start_job(self, run: FreshRun, locations: Mapping[str, str]) -> tuple[str, str]:
        ti = run.context["ti"]
        hook = self.hook
        ids = [
            job_id_for(ti.dag_id, ti.run_id, ti.task_id, getattr(ti, "map_index", -1), n)
            for n in range(1, int(ti.try_number) + 1)
        ]
        for earlier in reversed(ids[:-1]):
            job = hook.get_job(earlier)
            if job is None:
                continue
            if job.get("state") != "Ended":
                self.log.info("Re-attaching to job %s, submitted by an earlier try of this task.", earlier)
                return earlier, self.job_url(earlier)
            if job.get("result") == "Succeeded":
                self.log.info("Job %s of an earlier try succeeded; using its results.", earlier)
                return earlier, self.job_url(earlier)
        job_id = ids[-1]
        body: dict[str, Any] = {
            "type": "USql",
            "name": f"{self.step_name} ({ti.dag_id} {ti.run_id})"[:250],
            "properties": {"type": "USql", "script": self.script_text(run, locations)},
        }
        if self.degree_of_parallelism is not None:
            body["degreeOfParallelism"] = int(self.degree_of_parallelism)
        if self.priority is not None:
            body["priority"] = int(self.priority)
        if self.runtime_version:
            body["properties"]["runtimeVersion"] = self.runtime_version
        if hook.submit_job(job_id, body) is None:
            self.log.info("Job %s exists already (submitted before a crash); attaching to it.", job_id)
        else:
            self.log.info("Submitted Data Lake Analytics job %s for step '%s'.", job_id, self.step_name)
        return job_id, self.job_url(job_id)

    def job_state(self, job_id: str) -> tuple[bool, str]:
        job = self._job(job_id)
        return job.get("state") == "Ended", str(job.get("state"))

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self.hook.get_job(job_id)
        if job is None:
            raise StepRunError(f"Step '{self.step_name}': Data Lake Analytics job {job_id} has disappeared.")
        return job

    def job_trigger(self, job_id: str, job_url: str):
        from aml_airflow_provider.triggers.adla import AdlaJobTrigger

        return AdlaJobTrigger(self.conn_id, job_id, self.poll_seconds)

    def cancel_job(self, job_id: str) -> None:
        self.hook.cancel_job(job_id)

    def job_outcome(self, job_id: str, state: Mapping[str, Any]) -> JobOutcome:
        from aml_airflow_provider.triggers.adla import job_summary

        return self._outcome(job_summary(self._job(job_id)))

    def outcome_from_event(self, event: Mapping[str, Any], state: Mapping[str, Any]) -> JobOutcome:
        if event.get("status") != "ended":
            raise StepRunError(f"Step '{self.step_name}': {event.get('message') or event!r}")
        return self._outcome(event["job"])

    @staticmethod
    def _outcome(job: Mapping[str, Any]) -> JobOutcome:
        errors = [
            f"{e.get('severity', 'Error')} {e.get('errorId', '')} at line {e.get('lineNumber', '?')}: "
            f"{e.get('message') or e.get('description') or ''}".strip()
            for e in job.get("errorMessage") or []
        ]
        result = job.get("result")
        lines = [f"State: {job.get('state')}, result: {result}", *errors]
        return JobOutcome(
            succeeded=result == "Succeeded",
            summary=f"ended {result}" + (f": {'; '.join(errors)}" if errors else ""),
            log_lines=lines,
            details={"adla_result": result},
        )
