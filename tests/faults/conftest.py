"""Shared by the fault tests: an Azurite they may stop, a fault injected from a
background thread while a pipeline runs, and a small tmpfs for a full disk."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.azurite import Azurite
from tests.support.waiting import HANG_GUARD

#: A step script: the sha256 of every file under its input, as JSON, in its output.
DIGEST = """
import hashlib, json, os, sys
src, out = sys.argv[1], sys.argv[2]
manifest = {}
for folder, _, names in os.walk(src):
    for name in names:
        path = os.path.join(folder, name)
        with open(path, "rb") as fh:
            manifest[os.path.relpath(path, src).replace(os.sep, "/")] = hashlib.sha256(fh.read()).hexdigest()
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "manifest.json"), "w") as fh:
    json.dump(manifest, fh, sort_keys=True)
print("digested", len(manifest), "files")
"""


def content(seed: str, index: int, size: int) -> bytes:
    """The bytes of file ``index`` of a test data set (the same in the test and in a step script)."""
    return random.Random(f"{seed}-{index}").randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FaultThread(threading.Thread):
    """Runs ``inject(run_ended)`` in the background, while the test's thread runs a pipeline in-process.

    What it raised is re-raised by :meth:`result`, what it returned is returned; ``run_ended`` is set
    when the run is over (see :func:`fault_during`).
    """

    def __init__(self, inject: Callable[[threading.Event], object]) -> None:
        super().__init__(daemon=True, name="fault-injection")
        self._inject = inject
        self.run_ended = threading.Event()
        self._value: object = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = self._inject(self.run_ended)
        except BaseException as exc:  # re-raised in the test's thread
            self._error = exc

    def result(self) -> object:
        self.join(HANG_GUARD)
        assert not self.is_alive(), "the fault injection never finished"
        if self._error is not None:
            raise self._error
        return self._value


@contextmanager
def fault_during(inject: Callable[[threading.Event], object], *, cleanup: Callable[[], None]) -> Iterator[FaultThread]:
    """Inject a fault from a background thread while the ``with`` block runs; ``cleanup`` (e.g. start
    the service again) runs after both, whatever happened."""
    thread = FaultThread(inject)
    thread.start()
    try:
        yield thread
    finally:
        thread.run_ended.set()
        thread.join(HANG_GUARD)
        cleanup()


def step_work_dirs(task_id: str, since: float) -> list[Path]:
    """The private folders (``aml-<task>-*`` in the temp folder) of in-process step runs started after ``since``."""
    found = []
    for path in Path(tempfile.gettempdir()).glob(f"aml-{task_id[:40]}-*"):
        try:
            if path.stat().st_mtime >= since:
                found.append(path)
        except FileNotFoundError:  # removed when its step ended
            continue
    return found


def complete_files(folder: Path) -> int:
    """Files in ``folder`` (recursively) that are complete: not a backend's temp file."""
    try:
        return sum(1 for p in folder.rglob("*") if not p.name.startswith(".aml-tmp-") and p.is_file())
    except FileNotFoundError:
        return 0


@pytest.fixture
def fault_azurite(azurite_two_accounts: Azurite) -> Azurite:
    """The session's second Azurite, the one tests may stop (the session's ``azurite`` stays up)."""
    return azurite_two_accounts


@pytest.fixture
def fault_store(workspace, fault_azurite):
    """A blob datastore of the session workspace on a new container of :func:`fault_azurite`."""
    from aml_airflow_provider.core import Datastore

    store = Datastore.register_azure_blob_container(
        workspace,
        "faultstore",
        f"faults-{uuid.uuid4().hex[:12]}",
        connection_string=fault_azurite.connection_string,
        create_if_not_exists=True,
        overwrite=True,
    )
    yield store
    store.unregister()


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``path`` (root only: CI and these machines run the tests as root)."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            pytest.fail(
                "The full-disk tests mount a small tmpfs, which needs root (the test machines and CI run as root).",
                pytrace=False,
            )
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
        )

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self, leave: int = 0) -> Path:
        """Write a filler file until only ``leave`` bytes (rounded to pages) are free; return it."""
        filler = self.path / "filler.bin"
        with open(filler, "ab") as fh:
            while self.free() > leave:
                try:
                    fh.write(b"\0" * min(65536, self.free() - leave))
                    fh.flush()
                except OSError:
                    break
        return filler


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """An 8 MiB tmpfs, unmounted (with everything on it) when the test ends."""
    disk = Tmpfs(tmp_path / "small-disk", 8 * 1024 * 1024)
    disk.mount()
    try:
        yield disk
    finally:
        disk.unmount()
        shutil.rmtree(disk.path, ignore_errors=True)
