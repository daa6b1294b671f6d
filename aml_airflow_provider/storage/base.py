"""What every datastore backend offers: list, move files both ways, delete, and publish step outputs."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aml_airflow_provider._names import normalize_datastore_path
from aml_airflow_provider.exceptions import DatastoreError

log = logging.getLogger(__name__)

#: Files transferred at once by ``upload_many``/``download_many``.
DEFAULT_FILE_CONCURRENCY = 32
#: Parallel chunks for one large blob.
DEFAULT_CHUNK_CONCURRENCY = 8


@dataclass(frozen=True)
class RemoteFile:
    """A file on a datastore.

    :param path: full path on the datastore (``a/b/c.csv``)
    :param size: bytes
    :param etag: the store's change tag (blob ETag; for local files ``<mtime_ns>-<size>``)
    :param content_md5: hex MD5 when the store keeps one, else ``None``
    """

    path: str
    size: int
    etag: str | None = None
    content_md5: str | None = None


@dataclass
class TransferStats:
    """What a bulk transfer did."""

    files: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: float = 0.0


class _Progress:
    """Thread-safe counters that report at most every ``interval`` seconds."""

    def __init__(self, verb: str, total: int, report: Callable[[str], None] | None, interval: float = 5.0):
        self.verb, self.total, self.report, self.interval = verb, total, report, interval
        self.stats = TransferStats()
        self._lock = threading.Lock()
        self._start = self._last = time.monotonic()

    def add(self, nbytes: int, skipped: bool = False) -> None:
        with self._lock:
            if skipped:
                self.stats.skipped += 1
            else:
                self.stats.files += 1
                self.stats.bytes += nbytes
            now = time.monotonic()
            if self.report and now - self._last >= self.interval:
                self._last = now
                self.report(self._line(now))

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-9)
        done = self.stats.files + self.stats.skipped
        return (
            f"{self.verb} {done}/{self.total} files, {self.stats.bytes} bytes "
            f"({self.stats.bytes / elapsed / 1e6:.1f} MB/s)"
        )

    def finish(self) -> TransferStats:
        self.stats.seconds = time.monotonic() - self._start
        if self.report and self.total:
            self.report(self._line(time.monotonic()))
        return self.stats


class DatastoreBackend(ABC):
    """One datastore's storage. Paths are datastore paths, normalised with ``normalize_datastore_path``.

    Subclasses implement the four primitives; bulk transfers, fetching step inputs and publishing
    step outputs are built on them here.

    :param name: the datastore's name (for messages)
    """

    kind: str = "abstract"

    def __init__(self, name: str, *, file_concurrency: int = DEFAULT_FILE_CONCURRENCY) -> None:
        self.name = name
        self.file_concurrency = file_concurrency

    # -- primitives -------------------------------------------------------------------------------
    @abstractmethod
    def list_files(self, path: str) -> list[RemoteFile]:
        """Every file at ``path`` (if it is a file) or under it (recursively), sorted by path."""

    @abstractmethod
    def upload_file(self, local: Path, path: str, *, overwrite: bool) -> bool:
        """Store ``local`` at ``path``. Return False (and do nothing) if it exists and not ``overwrite``."""

    @abstractmethod
    def download_file(self, path: str, local: Path) -> int:
        """Write the file at ``path`` to ``local`` (never leaving a partial file there); return its size."""

    @abstractmethod
    def delete_prefix(self, path: str) -> int:
        """Delete the file at ``path`` and every file under it; return how many were deleted."""

    def local_path(self, path: str) -> Path | None:
        """The local filesystem path of ``path`` when the datastore is a local folder, else ``None``."""
        return None

    def free_space(self) -> int | None:
        """Bytes that can still be written to the datastore, when its storage has a known size, else ``None``."""
        return None

    def check_access(self) -> None:  # noqa: B027 - most backends have nothing to check
        """Raise :class:`DatastoreError` if the datastore cannot be reached with its credential now."""

    def describe(self, path: str = "") -> str:
        """A human-readable location, never containing credentials."""
        return f"datastore '{self.name}' path '{path}'"

    def spark_uri(self, path: str) -> str:
        """The location as a Spark cluster names it (``wasbs://...``); raise if a cluster cannot reach it."""
        raise DatastoreError(
            f"{self.describe(path)} cannot be reached from a Databricks cluster: use a blob datastore for the "
            "step's inputs and outputs, or run the step on local Spark."
        )

    def adla_uri(self, path: str) -> str:
        """The location as a U-SQL script names it; raise if Data Lake Analytics cannot reach it."""
        raise DatastoreError(
            f"{self.describe(path)} cannot be reached from Data Lake Analytics: use a blob datastore (a storage "
            "account linked to the Data Lake Analytics account) for the step's inputs and outputs."
        )

    def browse_url(self, path: str = "") -> str:
        """A URL for people to look at ``path`` (used by the Airflow UI's extra links), without credentials."""
        return f"azureml://datastores/{self.name}/paths/{normalize_datastore_path(path)}"

    # -- bulk transfers ---------------------------------------------------------------------------
    def _parallel(self, fn: Callable[[object], None], items: Sequence[object]) -> None:
        if len(items) <= 1 or self.file_concurrency <= 1:
            for item in items:
                fn(item)
            return
        with ThreadPoolExecutor(max_workers=min(self.file_concurrency, len(items))) as pool:
            # list() re-raises the first failure after all submitted work has stopped.
            list(pool.map(fn, items))

    def upload_many(
        self,
        pairs: Iterable[tuple[Path, str]],
        *,
        overwrite: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> TransferStats:
        """Upload ``(local file, datastore path)`` pairs in parallel; existing files are kept unless ``overwrite``."""
        items = [(Path(local), normalize_datastore_path(path)) for local, path in pairs]
        progress = _Progress("Uploaded", len(items), report)

        def one(item: object) -> None:
            local, path = item  # type: ignore[misc]
            uploaded = self.upload_file(local, path, overwrite=overwrite)
            progress.add(local.stat().st_size if uploaded else 0, skipped=not uploaded)

        self._parallel(one, items)
        return progress.finish()

    def download_many(
        self,
        pairs: Iterable[tuple[str, Path]],
        *,
        overwrite: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> TransferStats:
        """Download ``(datastore path, local file)`` pairs in parallel; existing files are kept unless ``overwrite``."""
        items = [(path, Path(local)) for path, local in pairs]
        progress = _Progress("Downloaded", len(items), report)

        def one(item: object) -> None:
            path, local = item  # type: ignore[misc]
            if local.exists() and not overwrite:
                progress.add(0, skipped=True)
                return
            local.parent.mkdir(parents=True, exist_ok=True)
            progress.add(self.download_file(path, local))

        self._parallel(one, items)
        return progress.finish()

    # -- step data --------------------------------------------------------------------------------
    def fetch(
        self,
        path: str,
        dest: Path,
        *,
        overwrite: bool = True,
        allow_empty: bool = False,
        report: Callable[[str], None] | None = None,
    ) -> Path:
        """Copy the data at ``path`` into the folder ``dest``; return the local path a step should use.

        A single file keeps its name (``dest/<file name>``, which is returned); a folder's files keep
        their layout under ``dest`` (``dest`` is returned). No data is an error naming the location,
        unless ``allow_empty`` (then ``dest`` is returned, empty).
        """
        path = normalize_datastore_path(path)
        files = self.list_files(path)
        dest.mkdir(parents=True, exist_ok=True)
        if not files:
            if allow_empty:
                return dest
            raise DatastoreError(f"No data at {self.describe(path)}: nothing to give the step.")
        if len(files) == 1 and files[0].path == path:
            target = dest / path.rsplit("/", 1)[-1]
            self.download_many([(path, target)], overwrite=overwrite, report=report)
            return target
        cut = len(path) + 1 if path else 0
        # A blob named exactly like the folder (possible on flat namespaces) has no place in it: skip it.
        # Every name is checked before anything is written: a hostile one must not land outside ``dest``.
        pairs = [
            (f.path, local_file_for(dest, f.path[cut:], source=self.describe(path))) for f in files if f.path != path
        ]
        self.download_many(pairs, overwrite=overwrite, report=report)
        return dest

    def staging_dir(self) -> Path | None:
        """A fresh folder from which :meth:`publish` can move data in atomically, or ``None``."""
        return None

    def publish(self, src: Path, path: str, *, report: Callable[[str], None] | None = None) -> None:
        """Make ``src`` (a file or a folder) the content of ``path``, which must not exist yet.

        Either all of it becomes visible or none of it stays behind: on failure, what was written
        is deleted before the error propagates.
        """
        path = normalize_datastore_path(path)
        if not path:
            raise DatastoreError(f"Refusing to publish onto the root of datastore '{self.name}'.")
        if not src.exists():
            raise DatastoreError(f"Nothing to publish to {self.describe(path)}: {src} does not exist.")
        if self.list_files(path):
            # Checked first, so the clean-up below can only ever remove what this call wrote.
            raise DatastoreError(
                f"Output location {self.describe(path)} already exists; outputs are never overwritten."
            )
        if src.is_file():
            pairs = [(src, path)]
        else:
            pairs = [(f, f"{path}/{f.relative_to(src).as_posix()}") for f in sorted(src.rglob("*")) if f.is_file()]
        try:
            self.upload_many(pairs, overwrite=True, report=report)
        except BaseException:
            self._cleanup_after_failure(path)
            raise

    def replace(self, src: Path, path: str, *, report: Callable[[str], None] | None = None) -> None:
        """:meth:`publish`, after removing what an earlier attempt left at ``path``."""
        if self.list_files(path):
            self.delete_prefix(path)
        self.publish(src, path, report=report)

    def _cleanup_after_failure(self, path: str) -> None:
        try:
            self.delete_prefix(path)
        except Exception:  # the original failure matters more; say what is left behind
            log.exception("Could not remove the partial output at %s", self.describe(path))


def move_into_place(src: Path, dest: Path) -> None:
    """Move ``src`` to the new path ``dest`` on one filesystem: readers see all of it or none of it.

    Never replaces what is at ``dest``: a file is linked (which fails if ``dest`` exists), a folder
    renamed (which fails onto a non-empty folder; an empty one is refused beforehand).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    exists = DatastoreError(f"Output location {dest} already exists; outputs are never overwritten.")
    if dest.exists() or dest.is_symlink():
        raise exists
    try:
        if src.is_dir():
            os.rename(src, dest)
        else:
            os.link(src, dest)
            os.unlink(src)
    except FileExistsError:
        raise exists from None
    except OSError:
        if dest.exists():
            raise exists from None
        raise


def local_file_for(folder: Path, name: str, *, source: str) -> Path:
    """``folder / name`` for a file called ``name`` on a datastore, refusing a name that would leave ``folder``.

    Blob names are free text: ``a/../../x`` (Azure Storage also turns ``\\`` into ``/``) joined to a
    local folder would write outside it, over anything the worker can write. A leading ``/`` and empty
    or ``.`` segments are dropped, as in every datastore path.

    :param folder: the local folder the file goes into
    :param name: its path relative to that folder, as the datastore names it
    :param source: where the file comes from, for the message (``datastore 'raw' (...)``)
    :raises DatastoreError: the name has a ``..`` segment, or no file name at all
    """
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise DatastoreError(
            f"Refusing to copy {name!r} from {source} into {folder}: that name is not a path inside the folder "
            "(it has '..' segments, or no file name), so the file would land elsewhere. Rename or delete it on "
            "the datastore."
        )
    return folder.joinpath(*parts)


def resolved_inside(path: Path, real_root: Path) -> Path | None:
    """``path`` with every symbolic link resolved, if that exists and is inside ``real_root`` (itself
    resolved); ``None`` for a link that leads outside, nowhere, or round in a loop."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop of links
        return None
    return real if real.is_relative_to(real_root) else None


def new_temp_name(prefix: str = ".aml-tmp-") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
