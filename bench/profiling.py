"""Turn a cProfile run into a short, JSON-friendly list of the functions that cost the most."""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: Functions in this package's files are "package functions".
PACKAGE = "aml_airflow_provider"
#: What a file name is shortened to: the package's own path, or the part after site-packages or the stdlib.
_MARKERS = (
    (PACKAGE + os.sep, PACKAGE + os.sep),
    ("site-packages" + os.sep, ""),
    (f"python{sys.version_info.major}.{sys.version_info.minor}" + os.sep, ""),
)


def _where(filename: str, line: int, function: str) -> str:
    """``file:line(function)`` with the file name shortened, or the bare name of a built-in."""
    if not line:
        return function
    for marker, prefix in _MARKERS:
        _, found, tail = filename.rpartition(marker)
        if found:
            return f"{prefix}{tail}:{line}({function})"
    return f"{filename}:{line}({function})"


def _is_named(row: dict[str, Any]) -> bool:
    """Whether a row is a named function (not a comprehension, generator expression or lambda)."""
    return not row["function"].endswith(">)")


def profile_call(call: Callable[[], Any], limit: int = 8, *, threads: bool = False) -> dict[str, Any]:
    """Run ``call`` under cProfile; return its seconds and the top functions by own and cumulative time.

    The cumulative list only holds named package functions: it shows where in the package the time goes.
    ``dominant`` is the one of them with the least cumulative time that still holds a third of the
    total: along the expensive call path, the deepest function, the one that names the cost.

    With ``threads``, every thread ``call`` starts is profiled too (cProfile alone sees only the calling
    thread), each on its own CPU time (``time.thread_time``: waiting for the network, a lock or the GIL
    does not count), and the profiles are added up: the times are CPU seconds summed over the threads,
    ``thread_seconds`` their total.
    """
    profiler = cProfile.Profile(time.thread_time) if threads else cProfile.Profile()
    workers: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_new_thread(*_: Any) -> None:
        # The first profiling event of a new thread lands here: replace this hook by a profiler of its own.
        worker = cProfile.Profile(time.thread_time)
        with lock:
            workers.append(worker)
        worker.enable()

    if threads:
        threading.setprofile(start_in_new_thread)
    started = time.perf_counter()
    try:
        profiler.runcall(call)
    finally:
        if threads:
            threading.setprofile(None)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    merged = pstats.Stats(profiler)
    with lock:
        for worker in workers:
            worker.create_stats()
            if worker.stats:  # type: ignore[attr-defined]
                merged.add(worker)
    stats = merged.stats  # type: ignore[attr-defined]
    rows = [
        {"function": _where(*key), "calls": calls, "tottime": tottime, "cumtime": cumtime}
        for key, (_, calls, tottime, cumtime, _) in stats.items()
    ]
    package = (r for r in rows if r["function"].startswith(PACKAGE) and _is_named(r))
    package_rows = sorted(package, key=lambda r: r["cumtime"], reverse=True)
    # Threads' CPU times add up: measure shares against the CPU time of all the profiled threads.
    total = merged.total_tt if threads else seconds  # type: ignore[attr-defined]
    holding = [r for r in package_rows if r["cumtime"] >= total / 3]
    return {
        "seconds": seconds,
        "threads": threads,
        "thread_seconds": total,
        "tottime": sorted(rows, key=lambda r: r["tottime"], reverse=True)[:limit],
        "cumtime": package_rows[:limit],
        "dominant": holding[-1] if holding else None,
    }
