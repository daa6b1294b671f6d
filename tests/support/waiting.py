"""Polling for something a background process or thread does: a hang guard, not a performance limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: Hang guard for one wait (not a performance limit).
HANG_GUARD = 300.0


def wait_until(
    what: str,
    predicate: Callable[[], object],
    *,
    interval: float = 0.01,
    give_up: threading.Event | None = None,
    timeout: float = HANG_GUARD,
):
    """Poll ``predicate`` until it returns something true, and return that.

    :param what: what is awaited, for the failure message
    :param give_up: once set, fail at once (e.g. the pipeline run ended before ``what`` happened)
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if give_up is not None and give_up.is_set():
            raise AssertionError(f"The run ended before {what}: the fault was not injected.")
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out waiting for {what}")
        time.sleep(interval)
