"""What a Celery deployment can tell about its workers: which of them serve a queue."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

#: Seconds to wait for workers to answer an inspection.
INSPECT_TIMEOUT = 2.0


def workers_on_queue(queue: str, broker_url: str, timeout: float = INSPECT_TIMEOUT) -> list[str]:
    """The names (``name@host``) of the Celery workers consuming ``queue`` now, sorted.

    :param queue: the queue (an ``AmlCompute``'s name, or ``default``)
    :param broker_url: the deployment's ``[celery] broker_url``
    :param timeout: seconds to wait for the workers' answers (a busy worker may answer late)
    """
    from celery import Celery

    app = Celery(broker=broker_url)
    try:
        answers = app.control.inspect(timeout=timeout).active_queues() or {}
    finally:
        app.close()
    return sorted(worker for worker, queues in answers.items() if any(q.get("name") == queue for q in queues or ()))
