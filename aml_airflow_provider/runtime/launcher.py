"""Running a step's process: no shell, output streamed line by line into the task log and the driver log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

#: Lines of stderr kept for the error message of a failed step.
STDERR_TAIL_LINES = 40


@dataclass
class ProcessResult:
    """How the process ended.

    :param returncode: its exit code (negative: killed by that signal)
    :param stderr_tail: the last lines it wrote to stderr
    :param stopped_because: why it was stopped on request, if it was
    """

    returncode: int
    stderr_tail: list[str]
    stopped_because: str | None = None


class OutputLines:
    """Where a step's output lines go: the task log, the driver log (opened for the run) and the error tail.

    :param log: the task's logger
    :param driver_log: a file that also receives every line (v1's ``70_driver_log.txt``)
    """

    def __init__(self, log: logging.Logger, driver_log: Path | None) -> None:
        self.log = log
        self.tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._tee = open(driver_log, "a", encoding="utf-8") if driver_log else None  # noqa: SIM115 - see close()
        self._lock = threading.Lock()  # stdout and stderr are pumped by two threads

    def emit(self, line: str, *, keep: bool = True) -> None:
        """Log ``line``, append it to the driver log and, if ``keep``, to the tail quoted on failure."""
        self.log.info("%s", line)
        with self._lock:
            if self._tee is not None:
                self._tee.write(line + "\n")
                self._tee.flush()
            if keep:
                self.tail.append(line)

    def close(self) -> None:
        if self._tee is not None:
            self._tee.close()


class StepProcess:
    """One child process (in its own process group, so it can be stopped with its children).

    :param argv: the command, executed directly
    :param cwd: working directory
    :param env: the complete environment
    :param log: where each line of output goes
    :param driver_log: a file that also receives every line (v1's ``70_driver_log.txt``)
    :param tail_stdout: keep stdout lines in the error tail too (spark-submit relays its driver's
        stderr on its own stdout)
    """

    def __init__(
        self,
        argv: Sequence[str],
        cwd: Path,
        env: Mapping[str, str],
        log: logging.Logger,
        driver_log: Path | None = None,
        *,
        tail_stdout: bool = False,
    ) -> None:
        self.argv = list(argv)
        self.tail_stdout = tail_stdout
        self.cwd = cwd
        self.env = dict(env)
        self.log = log
        self.driver_log = driver_log
        self._proc: subprocess.Popen[bytes] | None = None

    def _pump(self, stream: IO[bytes], lines: OutputLines, keep: bool) -> None:
        for raw in iter(stream.readline, b""):
            lines.emit(raw.decode("utf-8", errors="replace").rstrip("\r\n"), keep=keep)
        stream.close()

    def run(self, should_stop: Callable[[], str | None] | None = None, poll_seconds: float = 2.0) -> ProcessResult:
        """Run to completion (or until ``should_stop`` gives a reason); return how it ended."""
        lines = OutputLines(self.log, self.driver_log)
        try:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            pumps = [
                threading.Thread(target=self._pump, args=(self._proc.stdout, lines, self.tail_stdout), daemon=True),
                threading.Thread(target=self._pump, args=(self._proc.stderr, lines, True), daemon=True),
            ]
            for t in pumps:
                t.start()
            stopped_because = None
            while True:
                try:
                    returncode = self._proc.wait(timeout=poll_seconds if should_stop else None)
                    break
                except subprocess.TimeoutExpired:
                    stopped_because = should_stop() if should_stop else None
                    if stopped_because:
                        self.log.warning("Stopping the step: %s", stopped_because)
                        self.terminate()
            for t in pumps:
                t.join()
            return ProcessResult(returncode, list(lines.tail), stopped_because)
        finally:
            lines.close()

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
