"""The trigger that waits for a Data Lake Analytics job to end, in the triggerer."""

from __future__ import annotations

import asyncio
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

#: Job states of the ADLA job API; ``Ended`` is the only final one (its ``result`` says how).
ENDED = "Ended"


class AdlaJobTrigger(BaseTrigger):
    """Poll a Data Lake Analytics job until it has ended; yield its state, result and errors.

    :param adla_conn_id: the account's connection
    :param job_id: the job
    :param poll_interval: seconds between polls
    """

    def __init__(self, adla_conn_id: str, job_id: str, poll_interval: float = 30.0) -> None:
        super().__init__()
        self.adla_conn_id = adla_conn_id
        self.job_id = job_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "aml_airflow_provider.triggers.adla.AdlaJobTrigger",
            {"adla_conn_id": self.adla_conn_id, "job_id": self.job_id, "poll_interval": self.poll_interval},
        )

    def _hook(self):
        from aml_airflow_provider.hooks.adla import AdlaHook

        return AdlaHook(self.adla_conn_id)

    async def run(self):
        from asgiref.sync import sync_to_async

        hook = self._hook()
        while True:
            job = await sync_to_async(hook.get_job)(self.job_id)
            if job is None:
                yield TriggerEvent({"status": "error", "message": f"Data Lake Analytics job {self.job_id} not found."})
                return
            if job.get("state") == ENDED:
                yield TriggerEvent({"status": "ended", "job": job_summary(job)})
                return
            self.log.info("Data Lake Analytics job %s: %s", self.job_id, job.get("state"))
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """Cancel the job when the task is killed while it waits here."""
        from asgiref.sync import sync_to_async

        self.log.info("Cancelling Data Lake Analytics job %s.", self.job_id)
        await sync_to_async(self._hook().cancel_job)(self.job_id)


def job_summary(job: dict[str, Any]) -> dict[str, Any]:
    """What the operator needs of a JobInformation (it crosses the trigger boundary as JSON)."""
    return {
        "jobId": job.get("jobId"),
        "name": job.get("name"),
        "state": job.get("state"),
        "result": job.get("result"),
        "errorMessage": list(job.get("errorMessage") or []),
        "startTime": job.get("startTime"),
        "endTime": job.get("endTime"),
    }
