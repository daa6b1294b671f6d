"""ScheduleRecurrence's rules and timetables, and the datastore-change watcher of datastore schedules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aml_airflow_provider.exceptions import UserErrorException
from aml_airflow_provider.pipeline.core import ScheduleRecurrence

START = datetime(2026, 1, 5, 7, 30, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("kwargs", "rule"),
    [
        ({"frequency": "Minute", "interval": 15}, {"cron": "*/15 * * * *"}),
        ({"frequency": "Minute", "interval": 7}, {"every_seconds": 420}),
        ({"frequency": "Hour", "interval": 2}, {"cron": "30 */2 * * *"}),
        ({"frequency": "Day", "interval": 1, "hours": [6, 18], "minutes": [5]}, {"cron": "5 6,18 * * *"}),
        ({"frequency": "Day", "interval": 3, "time_of_day": "23:45"}, {"cron": "45 23 */3 * *"}),
        (
            {"frequency": "Week", "interval": 1, "week_days": ["Monday", "Sunday"], "time_of_day": "09:00"},
            {"cron": "0 9 * * 1,0"},
        ),
        ({"frequency": "Month", "interval": 1}, {"cron": "30 7 5 */1 *"}),
    ],
)
def test_recurrences_become_airflow_timetables(kwargs, rule):
    timetable = ScheduleRecurrence(start_time=START, time_zone="Europe/Paris", **kwargs).timetable()
    assert {k: v for k, v in timetable.items() if k in ("cron", "every_seconds")} == rule
    assert timetable["timezone"] == "Europe/Paris"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frequency": "Fortnight", "interval": 1}, "must be one of"),
        ({"frequency": "Day", "interval": 0}, "positive whole number"),
        ({"frequency": "Minute", "interval": 1, "hours": [1]}, "only be given for Day or Week"),
        ({"frequency": "Day", "interval": 1, "week_days": ["Monday"]}, "only be given for the Week"),
        ({"frequency": "Week", "interval": 1, "week_days": ["Funday"]}, "Week day 'Funday'"),
        ({"frequency": "Day", "interval": 1, "time_of_day": "25:00"}, "must be 'hh:mm'"),
        ({"frequency": "Day", "interval": 1, "hours": [24]}, "hours must be whole numbers"),
        ({"frequency": "Day", "interval": 1, "time_zone": "Mars/Olympus"}, "Unknown time zone"),
    ],
)
def test_bad_recurrences_are_refused(kwargs, message):
    with pytest.raises(UserErrorException, match=message):
        ScheduleRecurrence(**kwargs)


def test_datastore_watcher_runs_once_per_batch_of_changes(blob_datastore, connections, tmp_path):
    from airflow.sdk.exceptions import AirflowSkipException

    from aml_airflow_provider.operators.datastore_change import DatastoreChangeOperator

    data = tmp_path / "incoming"
    data.mkdir()

    def put(name: str, text: str) -> None:
        (data / name).write_text(text)
        blob_datastore.upload(str(data), target_path="watched", overwrite=True, show_progress=False)

    watcher = DatastoreChangeOperator(
        task_id="detect",
        workspace="test-ws",
        datastore="blobstore",
        path_on_datastore="watched",
        state_key="sched-1",
        state_datastore="workspaceblobstore",
    )
    put("a.csv", "1")
    with pytest.raises(AirflowSkipException, match="first look"):
        watcher.execute({})
    with pytest.raises(AirflowSkipException, match="nothing changed"):
        watcher.execute({})
    put("b.csv", "2")
    assert watcher.execute({}) == "azureml://datastores/blobstore/paths/watched/b.csv"
    (data / "a.csv").write_text("changed")
    put("c.csv", "3")
    assert watcher.execute({}) == "azureml://datastores/blobstore/paths/watched"  # one run for the batch
    with pytest.raises(AirflowSkipException, match="nothing changed"):
        watcher.execute({})
