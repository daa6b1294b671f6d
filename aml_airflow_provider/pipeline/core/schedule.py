"""``Schedule`` and ``ScheduleRecurrence``: run a published pipeline on a timetable or when data changes.

A schedule is a small DAG of its own (``aml_schedule_<name>_<id>``):

- a recurrence becomes its timetable (a cron expression, or a fixed interval), and its one task
  triggers the published pipeline's DAG with the schedule's parameter values;
- a datastore schedule polls every ``polling_interval`` minutes: a first task compares the files
  under ``path_on_datastore`` with what it saw last time (kept on the datastore) and, if anything
  changed, the second triggers one run for the whole batch, with the changed location in
  ``data_path_parameter_name``.

Disabling a schedule pauses its DAG.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aml_airflow_provider.dagfile import DagDocument
from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.spec import SCHEDULE_CONF_KEY

if TYPE_CHECKING:
    from airflow.sdk import DAG

    from aml_airflow_provider.core.datastore import Datastore
    from aml_airflow_provider.core.workspace import Workspace

SCHEDULE_KIND = "schedule"
FREQUENCIES = ("Minute", "Hour", "Day", "Week", "Month")
WEEK_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ACTIVE, DISABLED = "Active", "Disabled"


class ScheduleRecurrence:
    """How often a schedule fires (v1's rules).

    :param frequency: ``Minute``, ``Hour``, ``Day``, ``Week`` or ``Month``
    :param interval: every how many of them (a positive whole number)
    :param start_time: the first time (past start times are not caught up, as v1); default: now
    :param time_zone: an IANA zone name such as ``Europe/Paris`` (default UTC)
    :param hours: for ``Day``/``Week``: the hours of the day to run at
    :param minutes: for ``Day``/``Week``: the minutes of those hours
    :param week_days: for ``Week``: ``Monday`` ... ``Sunday``
    :param time_of_day: for ``Day``/``Week``: ``"hh:mm"``, instead of ``hours``/``minutes``
    """

    def __init__(
        self,
        frequency: str,
        interval: int,
        start_time: datetime | str | None = None,
        time_zone: str | None = None,
        hours: list[int] | None = None,
        minutes: list[int] | None = None,
        week_days: list[str] | None = None,
        time_of_day: str | None = None,
    ) -> None:
        if frequency not in FREQUENCIES:
            raise UserErrorException(f"ScheduleRecurrence frequency {frequency!r} must be one of {FREQUENCIES}.")
        if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
            raise UserErrorException(f"ScheduleRecurrence interval {interval!r} must be a positive whole number.")
        if (hours or minutes or time_of_day) and frequency not in ("Day", "Week"):
            raise UserErrorException("hours, minutes and time_of_day can only be given for Day or Week frequencies.")
        if time_of_day and (hours or minutes):
            raise UserErrorException("Give time_of_day or hours/minutes, not both.")
        if week_days and frequency != "Week":
            raise UserErrorException("week_days can only be given for the Week frequency.")
        if frequency == "Week" and interval != 1:
            raise UserErrorException(
                "Weekly recurrences run every week (interval=1); use Day with an interval instead."
            )
        for day in week_days or ():
            if day not in WEEK_DAYS:
                raise UserErrorException(f"Week day {day!r} must be one of {WEEK_DAYS}.")
        if time_of_day:
            match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", time_of_day)
            if not match:
                raise UserErrorException(f"time_of_day {time_of_day!r} must be 'hh:mm'.")
            hours, minutes = [int(match.group(1))], [int(match.group(2))]
        for value, top, what in ((hours, 23, "hours"), (minutes, 59, "minutes")):
            if value and any(not isinstance(v, int) or not 0 <= v <= top for v in value):
                raise UserErrorException(f"{what} must be whole numbers from 0 to {top}.")
        if time_zone is not None:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise UserErrorException(f"Unknown time zone {time_zone!r}; give an IANA name.") from None
        if isinstance(start_time, str):
            start_time = datetime.fromisoformat(start_time)
        self.frequency, self.interval, self.start_time, self.time_zone = frequency, interval, start_time, time_zone
        self.hours, self.minutes, self.week_days = hours, minutes, week_days

    def timetable(self) -> dict[str, Any]:
        """The Airflow schedule: ``{"cron": ...}`` or ``{"every_seconds": ...}``, with ``timezone``."""
        start = self.start_time or datetime.now(UTC)
        minutes = ",".join(str(m) for m in self.minutes) if self.minutes else str(start.minute)
        hours = ",".join(str(h) for h in self.hours) if self.hours else str(start.hour)
        n = self.interval
        if self.frequency == "Minute":
            rule = {"cron": f"*/{n} * * * *"} if 60 % n == 0 else {"every_seconds": n * 60}
        elif self.frequency == "Hour":
            rule = {"cron": f"{start.minute} */{n} * * *"} if 24 % n == 0 else {"every_seconds": n * 3600}
        elif self.frequency == "Day":
            rule = {"cron": f"{minutes} {hours} */{n} * *" if n > 1 else f"{minutes} {hours} * * *"}
        elif self.frequency == "Week":
            days = ",".join(str((WEEK_DAYS.index(d) + 1) % 7) for d in (self.week_days or [])) or str(
                (start.weekday() + 1) % 7
            )
            rule = {"cron": f"{minutes} {hours} * * {days}"}
        else:
            rule = {"cron": f"{start.minute} {start.hour} {start.day} */{n} *"}
        return {**rule, "timezone": self.time_zone or "UTC", "start": start.astimezone(UTC).isoformat()}

    def to_dict(self) -> dict[str, Any]:
        return {
            "frequency": self.frequency,
            "interval": self.interval,
            "start_time": self.start_time.isoformat() if self.start_time else None,
            "time_zone": self.time_zone,
            "hours": self.hours,
            "minutes": self.minutes,
            "week_days": self.week_days,
        }

    def __repr__(self) -> str:
        return f"ScheduleRecurrence(frequency={self.frequency!r}, interval={self.interval!r})"


class Schedule:
    """A schedule of a published pipeline (make one with :meth:`create`)."""

    def __init__(self, workspace: Workspace, document: DagDocument) -> None:
        self._workspace = workspace
        self._document = document

    id = property(lambda self: self._document.meta["id"])
    name = property(lambda self: self._document.meta["name"])
    description = property(lambda self: self._document.meta.get("description"))
    pipeline_id = property(lambda self: self._document.meta["pipeline_id"])
    status = property(lambda self: self._document.meta.get("status", ACTIVE))
    recurrence = property(lambda self: self._document.meta.get("recurrence"))
    datastore_name = property(lambda self: (self._document.meta.get("datastore") or {}).get("name"))

    @property
    def dag_id(self) -> str:
        return self._document.dag_id

    @staticmethod
    def create(
        workspace: Workspace,
        name: str,
        pipeline_id: str,
        experiment_name: str,
        recurrence: ScheduleRecurrence | None = None,
        description: str | None = None,
        pipeline_parameters: Mapping[str, Any] | None = None,
        wait_for_provisioning: bool = False,
        wait_timeout: int = 3600,
        datastore: Datastore | None = None,
        polling_interval: int = 5,
        data_path_parameter_name: str | None = None,
        continue_on_step_failure: bool | None = None,
        path_on_datastore: str | None = None,
    ) -> Schedule:
        """Schedule the published pipeline ``pipeline_id`` on a ``recurrence`` or on changes in ``datastore``.

        :param polling_interval: minutes between two looks at ``datastore`` (default 5)
        :param data_path_parameter_name: the ``DataPath`` parameter that receives the changed location
        :param path_on_datastore: the folder (or file) to watch (default: the whole datastore)
        :param wait_for_provisioning: accepted for v1 compatibility (a schedule is ready when created)
        """
        from aml_airflow_provider._names import check_experiment_name, normalize_datastore_path
        from aml_airflow_provider.pipeline.core.published import PublishedPipeline, submit_conf

        if (recurrence is None) == (datastore is None):
            raise UserErrorException(f"Schedule '{name}': give a recurrence or a datastore (one of them).")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,99}", name):
            raise UserErrorException(f"Schedule name {name!r}: 1-100 letters, digits, spaces, '_', '.' or '-'.")
        published = PublishedPipeline.get(workspace, pipeline_id)
        conf = submit_conf(
            published.spec,
            set(workspace.datastores),
            experiment_name=check_experiment_name(experiment_name),
            pipeline_parameters=pipeline_parameters,
            continue_on_step_failure=continue_on_step_failure,
        )
        schedule_id = str(uuid.uuid4())
        meta: dict[str, Any] = {
            "id": schedule_id,
            "name": name,
            "description": description,
            "pipeline_id": pipeline_id,
            "pipeline_dag_id": published.dag_id,
            "experiment_name": experiment_name,
            "conf": conf,
            "status": ACTIVE,
            "workspace": workspace.name,
            "created": datetime.now(UTC).isoformat(),
        }
        if recurrence is not None:
            if not isinstance(recurrence, ScheduleRecurrence):
                raise UserErrorException(f"Schedule '{name}': recurrence must be a ScheduleRecurrence.")
            meta["recurrence"] = recurrence.to_dict()
            meta["timetable"] = recurrence.timetable()
        else:
            from aml_airflow_provider.core.datastore import Datastore

            if not isinstance(datastore, Datastore) or datastore.datastore_type != "AzureBlob":
                raise UserErrorException("Datastore must be of type AzureBlobDatastore (as in SDK v1).")
            if not isinstance(polling_interval, int) or polling_interval < 1:
                raise UserErrorException("polling_interval must be a whole number of minutes, at least 1.")
            if data_path_parameter_name is not None:
                kinds = {p.name: p.type for p in published.spec.parameters}
                if kinds.get(data_path_parameter_name) != "datapath":
                    raise UserErrorException(
                        f"data_path_parameter_name {data_path_parameter_name!r} is not a DataPath parameter of "
                        f"published pipeline {pipeline_id}."
                    )
            meta["datastore"] = {
                "name": datastore.name,
                "path": normalize_datastore_path(path_on_datastore),
                "polling_interval": polling_interval,
                "data_path_parameter_name": data_path_parameter_name,
                "state_datastore": published.spec.default_datastore,
            }
        document = DagDocument(
            dag_id=f"aml_schedule_{re.sub(r'[^a-z0-9]+', '_', name.lower()).strip('_')[:60]}_{schedule_id[:8]}",
            kind=SCHEDULE_KIND,
            dag_kwargs={"tags": ["aml", "aml-schedule"], "description": description},
            meta=meta,
        )
        deployment = workspace._deployment
        deployment.write_dag(document, title=f"AML schedule '{name}' of published pipeline '{published.name}'")
        deployment.set_paused(document.dag_id, False)
        return Schedule(workspace, document)

    @staticmethod
    def get(workspace: Workspace, id: str, _workflow_provider: Any = None, _service_endpoint: Any = None) -> Schedule:
        for document in workspace._deployment.list_dags(SCHEDULE_KIND):
            if document.meta.get("id") == id:
                return Schedule(workspace, document)
        raise UserErrorException(f"No schedule with id {id!r} in workspace '{workspace.name}'.")

    @staticmethod
    def list(
        workspace: Workspace,
        active_only: bool = True,
        pipeline_id: str | None = None,
        pipeline_endpoint_id: str | None = None,
        **kwargs: Any,
    ) -> list[Schedule]:
        schedules = [Schedule(workspace, d) for d in workspace._deployment.list_dags(SCHEDULE_KIND)]
        return [
            s
            for s in schedules
            if (s.status == ACTIVE or not active_only) and (pipeline_id is None or s.pipeline_id == pipeline_id)
        ]

    get_all = list

    @staticmethod
    def get_schedules_for_pipeline_id(workspace: Workspace, pipeline_id: str, **kwargs: Any) -> list[Schedule]:
        return Schedule.list(workspace, active_only=False, pipeline_id=pipeline_id)

    def _set_status(self, status: str) -> None:
        from aml_airflow_provider.pipeline.core.published import set_status

        self._document = set_status(self._workspace, self._document, status, f"AML schedule '{self.name}'")

    def enable(self, wait_for_provisioning: bool = False, wait_timeout: int = 3600) -> None:
        self._set_status(ACTIVE)

    def disable(self, wait_for_provisioning: bool = False, wait_timeout: int = 3600) -> None:
        """Stop the schedule (its DAG is paused)."""
        self._set_status(DISABLED)

    def get_pipeline_runs(self) -> list[Any]:
        """Runs of the published pipeline that this schedule started, newest first."""
        from aml_airflow_provider.core.experiment import Experiment
        from aml_airflow_provider.pipeline.core.run import PipelineRun

        meta = self._document.meta
        experiment = Experiment(self._workspace, meta["experiment_name"])
        return [
            PipelineRun(experiment, r.run_id, _dag_id=meta["pipeline_dag_id"])
            for r in self._workspace._deployment.list_dag_runs(meta["pipeline_dag_id"])
            if r.conf.get(SCHEDULE_CONF_KEY) == self.id
        ]

    def get_last_pipeline_run(self) -> Any:
        runs = self.get_pipeline_runs()
        return runs[0] if runs else None

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, id={self.id!r}, status={self.status!r})"


def build_schedule_dag(document: DagDocument) -> DAG:
    """The DAG of a schedule document (called by its generated DAG file)."""
    from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
    from airflow.sdk import DAG, CronTriggerTimetable, DeltaTriggerTimetable

    meta = document.meta
    conf = {**meta["conf"], SCHEDULE_CONF_KEY: meta["id"]}
    kwargs = {
        "catchup": False,
        "max_active_runs": 1,
        "doc_md": f"Runs published pipeline `{meta['pipeline_id']}` (schedule `{document.version_mark}`).",
        **document.dag_kwargs,
    }
    if "timetable" in meta:
        rule = meta["timetable"]
        schedule: Any = (
            CronTriggerTimetable(rule["cron"], timezone=rule["timezone"])
            if "cron" in rule
            else DeltaTriggerTimetable(timedelta(seconds=rule["every_seconds"]))
        )
        start = datetime.fromisoformat(rule["start"])
    else:
        watch = meta["datastore"]
        schedule = timedelta(minutes=watch["polling_interval"])
        start = datetime.fromisoformat(meta["created"])
    with DAG(document.dag_id, schedule=schedule, start_date=start, **kwargs) as dag:
        if "datastore" in meta:
            from aml_airflow_provider.operators.datastore_change import DatastoreChangeOperator

            watch = meta["datastore"]
            detect = DatastoreChangeOperator(
                task_id="detect_changes",
                workspace=meta["workspace"],
                datastore=watch["name"],
                path_on_datastore=watch["path"],
                state_key=meta["id"],
                state_datastore=watch["state_datastore"],
            )
            if watch.get("data_path_parameter_name"):
                conf[watch["data_path_parameter_name"]] = "{{ ti.xcom_pull(task_ids='detect_changes') }}"
            detect >> TriggerDagRunOperator(task_id="run_pipeline", trigger_dag_id=meta["pipeline_dag_id"], conf=conf)
        else:
            TriggerDagRunOperator(task_id="run_pipeline", trigger_dag_id=meta["pipeline_dag_id"], conf=conf)
    return dag
