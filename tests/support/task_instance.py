"""A task-instance stand-in for driving an operator's ``execute()`` directly: ids, XCom and run state."""

from __future__ import annotations


class FakeTI:
    """The parts of a task instance the operator uses: ids and XCom."""

    def __init__(self, upstream: dict[tuple[str, str], str] | None = None, try_number: int = 1) -> None:
        self.dag_id, self.run_id, self.task_id, self.try_number = (
            "dag1",
            "manual__2026-01-01T00:00:00+00:00",
            "t1",
            try_number,
        )
        self.pushed: dict[str, str] = {}
        self.upstream = upstream or {}

    def xcom_push(self, key: str, value: str) -> None:
        self.pushed[key] = value

    def xcom_pull(self, task_ids: str, key: str) -> str | None:
        return self.upstream.get((task_ids, key))

    def get_dagrun_state(self, dag_id: str, run_id: str) -> str:
        return "running"

    def get_task_states(self, dag_id: str, run_ids: list[str]) -> dict:
        return {run_ids[0]: {}}
