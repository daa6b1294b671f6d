"""Running a step's process: no shell, output streamed line by line into the task log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Lines of stderr kept for the error message of a failed step.
STDERR_TAIL_LINES = 40


@dataclass
class ProcessResult:
    returncode: int
    stderr_tail: list[str]


class StepProcess:
    """One child process (in its own process group, so it can be stopped with its children).

    :param argv: the command, executed directly
    :param cwd: working directory
    :param env: the complete environment
    :param log: where each line of output goes
    """

    def __init__(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], log: logging.Logger) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def _pump(self, stream: IO[bytes], tail: deque[str] | None) -> None:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            self.log.info("%s", line)
            if tail is not None:
                tail.append(line)
        stream.close()

    def run(self) -> ProcessResult:
        """Run to completion and return the exit code with the end of stderr."""
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        pumps = [
            threading.Thread(target=self._pump, args=(self._proc.stdout, None), daemon=True),
            threading.Thread(target=self._pump, args=(self._proc.stderr, tail), daemon=True),
        ]
        for t in pumps:
            t.start()
        returncode = self._proc.wait()
        for t in pumps:
            t.join()
        return ProcessResult(returncode, list(tail))

    def terminate(self, grace_seconds: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace_seconds``."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # it ended between poll() and killpg()
