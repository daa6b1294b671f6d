"""``[core] hostname_callable`` of the tests' Celery workers: both run on this machine, so each reports
its own name (``AML_TEST_WORKER``) as the host of the tasks it runs."""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    return os.environ.get("AML_TEST_WORKER") or socket.getfqdn()
