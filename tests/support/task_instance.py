"""A task-instance stand-in for driving an operator's ``execute()`` directly: ids, XCom and run state."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class FakeTI:
    """The parts of a task instance the operator uses: ids and XCom."""

    def __init__(self, upstream: dict[tuple[str, str], str] | None = None, try_number: int = 1) -> None:
        self.dag_id, self.run_id, self.task_id, self.try_number = (
            "dag1",
            "manual__2026-01-01T00:00:00+00:00",
            "t1",
            try_number,
        )
        self.map_index = -1
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


class Background:
    """Run ``op.execute(context)`` in a thread, until ``ready()`` says it got far enough; keep its exception.

    :param op: the operator
    :param context: what ``execute`` gets
    :param ready: polled until true (or the thread ends), e.g. "its process has started"
    """

    def __init__(self, op: Any, context: dict[str, Any], ready: Callable[[], bool]) -> None:
        self.op, self.errors = op, []
        self.thread = threading.Thread(target=self._run, args=(context,))
        self.thread.start()
        while self.thread.is_alive() and not ready():
            self.thread.join(0.02)

    def _run(self, context: dict[str, Any]) -> None:
        try:
            self.op.execute(context)
        except BaseException as exc:
            self.errors.append(exc)

    def result(self, timeout: float = 120) -> BaseException | None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "execute() did not end"
        return self.errors[0] if self.errors else None
