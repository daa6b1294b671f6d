"""Turn a cProfile run into a short, JSON-friendly list of the functions that cost the most."""

from __future__ import annotations

import cProfile
import os
import pstats
import sys
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


def profile_call(call: Callable[[], Any], limit: int = 8) -> dict[str, Any]:
    """Run ``call`` under cProfile; return its seconds and the top functions by own and cumulative time.

    The cumulative list only holds named package functions: it shows where in the package the time goes.
    ``dominant`` is the one of them with the least cumulative time that still holds a third of the
    total: along the expensive call path, the deepest function, the one that names the cost.
    """
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.runcall(call)
    seconds = time.perf_counter() - started
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    rows = [
        {"function": _where(*key), "calls": calls, "tottime": tottime, "cumtime": cumtime}
        for key, (_, calls, tottime, cumtime, _) in stats.items()
    ]
    package = (r for r in rows if r["function"].startswith(PACKAGE) and _is_named(r))
    package_rows = sorted(package, key=lambda r: r["cumtime"], reverse=True)
    holding = [r for r in package_rows if r["cumtime"] >= seconds / 3]
    return {
        "seconds": seconds,
        "tottime": sorted(rows, key=lambda r: r["tottime"], reverse=True)[:limit],
        "cumtime": package_rows[:limit],
        "dominant": holding[-1] if holding else None,
    }
