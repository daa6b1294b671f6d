"""Source snapshots: a step runs from a content-addressed copy of its ``source_directory``.

A snapshot is a manifest (relative path -> sha256, size, executable bit) stored on a datastore next
to the files it names, each stored once under its content hash. Its id is the sha256 of the
manifest, so an unchanged folder is stored once and a run can always be traced to the exact code it
ran. Which files count follows SDK v1: ``.amlignore`` in the folder's root, or ``.gitignore`` when
there is none (gitignore syntax), plus v1's default ignores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aml_airflow_provider.exceptions import DatastoreError, SnapshotTooLargeError, UserErrorException
from aml_airflow_provider.storage.base import DatastoreBackend, local_file_for, resolved_inside

log = logging.getLogger(__name__)

#: Where snapshots live on their datastore.
SNAPSHOT_ROOT = "azureml/snapshots"
#: v1's default ignores (the patterns it wrote into a new ``.amlignore``), plus Python caches.
DEFAULT_IGNORES = (
    ".git",
    ".azureml",
    "azureml-logs",
    "azureml-setup",
    "outputs",
    ".ipynb_checkpoints",
    "docs",
    "__pycache__",
    "*.pyc",
)
#: Generous defaults (v1 stopped at 300 MB and 2,000 files); raise them with these variables.
MAX_MB_VARIABLE = "AML_SNAPSHOT_MAX_MB"
MAX_FILES_VARIABLE = "AML_SNAPSHOT_MAX_FILES"
DEFAULT_MAX_MB = 1024
DEFAULT_MAX_FILES = 10_000


@dataclass(frozen=True)
class SnapshotFile:
    path: str
    sha256: str
    size: int
    executable: bool


@dataclass(frozen=True)
class Snapshot:
    """The files of one source directory, by content."""

    files: tuple[SnapshotFile, ...]

    @property
    def manifest(self) -> dict[str, list]:
        return {f.path: [f.sha256, f.size, f.executable] for f in self.files}

    @property
    def id(self) -> str:
        text = json.dumps(self.manifest, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    @classmethod
    def from_manifest(cls, manifest: dict[str, list]) -> Snapshot:
        return cls(tuple(SnapshotFile(p, h, s, x) for p, (h, s, x) in sorted(manifest.items())))


def ignore_file(source_directory: Path) -> Path | None:
    """The ignore file that applies: ``.amlignore``, else ``.gitignore`` (v1's rule)."""
    for name in (".amlignore", ".gitignore"):
        if (source_directory / name).is_file():
            return source_directory / name
    return None


def _ignore_spec(source_directory: Path):
    from pathspec import GitIgnoreSpec

    lines = list(DEFAULT_IGNORES)
    found = ignore_file(source_directory)
    if found is not None:
        lines += found.read_text(encoding="utf-8", errors="replace").splitlines()
    return GitIgnoreSpec.from_lines(lines)


def _limits() -> tuple[int, int]:
    try:
        max_mb = int(os.environ.get(MAX_MB_VARIABLE, DEFAULT_MAX_MB))
        max_files = int(os.environ.get(MAX_FILES_VARIABLE, DEFAULT_MAX_FILES))
    except ValueError as exc:
        raise UserErrorException(f"{MAX_MB_VARIABLE} and {MAX_FILES_VARIABLE} must be whole numbers: {exc}") from None
    return max_mb * 1024 * 1024, max_files


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _linked_inside(root: Path, real_root: Path, path: Path, rel: str) -> Path | None:
    """``path`` resolved, or ``None`` (with a warning naming it) for a symbolic link that leads outside the
    source directory or nowhere.

    A snapshot holds the source directory's files only: a link to ``~/.ssh`` or ``/etc`` must not pull
    the worker's files into it (and onto the datastore). A link to a file or folder inside is kept.
    """
    real = resolved_inside(path, real_root)
    if real is not None:
        return real
    if not path.exists():
        log.warning("Source directory %s: leaving out %s, a symbolic link that leads nowhere.", root, rel)
    else:
        log.warning(
            "Source directory %s: leaving out %s, a symbolic link to %s, outside the source directory (a "
            "snapshot holds only files inside it; copy what the step needs into the folder).",
            root, rel, path.resolve(),
        )  # fmt: skip
    return None


def _kept_files(source_directory: Path) -> list[tuple[str, Path, os.stat_result]]:
    """``(relative path, path, stat)`` of every file the ignore rules keep, within the limits."""
    root = Path(source_directory)
    if not root.is_dir():
        raise UserErrorException(f"Source directory {str(root)!r} is not a folder.")
    spec = _ignore_spec(root)
    max_bytes, max_files = _limits()
    real_root = root.resolve()
    kept: list[tuple[str, Path, os.stat_result]] = []
    # The real folders on the way to each folder walked: a link back to one of them is a loop.
    chains: dict[str, frozenset[Path]] = {str(root): frozenset({real_root})}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        chain = chains.pop(dirpath, None) or frozenset({real_root, Path(dirpath).resolve()})
        walked = []
        # Prune ignored folders so a huge ignored tree (a virtualenv, data) is never walked.
        for name in sorted(d for d in dirnames if not spec.match_file(f"{rel_dir}{d}/")):
            path = Path(dirpath, name)
            real = _linked_inside(root, real_root, path, f"{rel_dir}{name}")
            if real is None:
                continue
            if real in chain:
                log.warning(
                    "Source directory %s: leaving out %s, a symbolic link to %s, which contains it (a loop).",
                    root, f"{rel_dir}{name}", real,
                )  # fmt: skip
                continue
            chains[str(path)] = chain | {real}
            walked.append(name)
        dirnames[:] = walked
        for name in sorted(filenames):
            rel = f"{rel_dir}{name}"
            if not spec.match_file(rel):
                path = Path(dirpath, name)
                if path.is_symlink() and _linked_inside(root, real_root, path, rel) is None:
                    continue
                kept.append((rel, path, path.stat()))
    total = sum(st.st_size for _, _, st in kept)
    if total > max_bytes or len(kept) > max_files:
        biggest = sorted(kept, key=lambda item: item[2].st_size, reverse=True)[:5]
        listing = ", ".join(f"{rel} ({st.st_size / 1e6:.1f} MB)" for rel, _, st in biggest)
        where = ignore_file(root) or root / ".amlignore"
        raise SnapshotTooLargeError(
            f"Source directory {str(root)!r} is too big to snapshot: {len(kept)} files, {total / 1e6:.1f} MB "
            f"(limits: {max_files} files, {max_bytes / 1e6:.0f} MB). Biggest files: {listing}. Add what the "
            f"step does not need to {where}, or raise {MAX_MB_VARIABLE} / {MAX_FILES_VARIABLE}."
        )
    return sorted(kept)


def scan(source_directory: Path) -> Snapshot:
    """The snapshot of ``source_directory``: the files its ignore rules keep, by content hash.

    :raises SnapshotTooLargeError: over the size or file-count limit; the message names the biggest
        files and the ignore file to edit
    """
    return Snapshot(
        tuple(
            SnapshotFile(rel, file_sha256(path), st.st_size, bool(st.st_mode & stat.S_IXUSR))
            for rel, path, st in _kept_files(source_directory)
        )
    )


def copy_kept_files(source_directory: Path, dest: Path) -> None:
    """Copy the files the ignore rules keep into ``dest`` (a step then snapshots this copy, not the live folder)."""
    for rel, path, _ in _kept_files(source_directory):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _blob_path(sha256: str) -> str:
    return f"{SNAPSHOT_ROOT}/files/{sha256[:2]}/{sha256}"


def _manifest_path(snapshot_id: str) -> str:
    return f"{SNAPSHOT_ROOT}/{snapshot_id}.json"


def store(snapshot: Snapshot, source_directory: Path, backend: DatastoreBackend) -> str:
    """Put the snapshot on ``backend`` (files missing there first, the manifest last); return its id.

    A stored manifest means every file it names is there, so an unchanged folder costs one lookup.
    """
    snapshot_id = snapshot.id
    manifest_path = _manifest_path(snapshot_id)
    if backend.list_files(manifest_path):
        return snapshot_id
    by_hash = {f.sha256: source_directory / f.path for f in snapshot.files}
    missing = [(local, _blob_path(h)) for h, local in by_hash.items() if not backend.list_files(_blob_path(h))]
    backend.upload_many(missing, overwrite=False)
    with tempfile.TemporaryDirectory(prefix="aml-manifest-") as tmp:
        local = Path(tmp) / "manifest.json"
        local.write_text(json.dumps(snapshot.manifest, sort_keys=True), encoding="utf-8")
        backend.upload_many([(local, manifest_path)], overwrite=True)
    log.info(
        "Stored snapshot %s (%d files, %d new) on %s",
        snapshot_id,
        len(snapshot.files),
        len(missing),
        backend.describe(SNAPSHOT_ROOT),
    )
    return snapshot_id


def take(source_directory: Path, backend: DatastoreBackend) -> str:
    """Snapshot a folder and store it; return the id.

    The kept files are copied first and the copy is hashed and stored, so a file edited meanwhile
    cannot end up stored under another file's hash.
    """
    with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
        copy = Path(tmp) / "src"
        copy_kept_files(Path(source_directory), copy)
        return store(scan(copy), copy, backend)


def load(snapshot_id: str, backend: DatastoreBackend, work: Path) -> Snapshot:
    """Read a stored manifest (``work`` is a scratch folder)."""
    path = _manifest_path(snapshot_id)
    if not backend.list_files(path):
        raise DatastoreError(f"Snapshot {snapshot_id} is not on {backend.describe(SNAPSHOT_ROOT)}.")
    target = work / f"manifest-{snapshot_id}.json"
    backend.download_many([(path, target)], overwrite=True)
    snapshot = Snapshot.from_manifest(json.loads(target.read_text(encoding="utf-8")))
    if snapshot.id != snapshot_id:
        # The id is the manifest's hash: anything else means the stored manifest was changed.
        raise DatastoreError(
            f"Snapshot {snapshot_id} on {backend.describe(SNAPSHOT_ROOT)} does not match its id (its manifest "
            f"hashes to {snapshot.id}): the store is corrupt or was edited. Submit the pipeline again to take "
            "a fresh snapshot."
        )
    return snapshot


def materialize(
    snapshot: Snapshot, backend: DatastoreBackend, dest: Path, *, report: Callable[[str], None] | None = None
) -> None:
    """Write the snapshot's files under ``dest`` and check each against its hash."""
    dest.mkdir(parents=True, exist_ok=True)
    # A manifest is read from the datastore, where anyone with write access could have edited it.
    where = f"snapshot {snapshot.id} on {backend.describe(SNAPSHOT_ROOT)}"
    targets = {f.path: local_file_for(dest, f.path, source=where) for f in snapshot.files}
    backend.download_many(
        [(_blob_path(f.sha256), targets[f.path]) for f in snapshot.files], overwrite=True, report=report
    )
    for f in snapshot.files:
        local = targets[f.path]
        if file_sha256(local) != f.sha256:
            raise DatastoreError(f"Snapshot file {f.path} does not match its hash {f.sha256}: the store is corrupt.")
        if f.executable:
            local.chmod(local.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def diff(old: Snapshot, new: Snapshot) -> list[str]:
    """Files added, removed or changed between two snapshots."""
    before, after = old.manifest, new.manifest
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def diff_stored(backend: DatastoreBackend, old_id: str, new_id: str) -> list[str]:
    """:func:`diff` of two stored snapshots (empty if either is no longer stored)."""
    with tempfile.TemporaryDirectory(prefix="aml-snapshot-") as tmp:
        try:
            return diff(load(old_id, backend, Path(tmp)), load(new_id, backend, Path(tmp)))
        except DatastoreError:
            return []


def for_step(pinned: str | None, source_directory: Path, script_dir: Path, backend: DatastoreBackend) -> str:
    """The snapshot a step runs from: ``pinned`` (taken by ``submit``/``publish``), or one taken now.

    A snapshot taken now is of a copy made in ``script_dir`` first, so the step never runs from the
    live folder.
    """
    if pinned:
        return pinned
    copy_kept_files(Path(source_directory), script_dir)
    return store(scan(script_dir), script_dir, backend)


def fill_script_dir(pinned: str | None, script_dir: Path, backend: DatastoreBackend, work: Path) -> None:
    """Write a pinned snapshot's files to ``script_dir`` (one taken by :func:`for_step` is there already)."""
    if pinned:
        materialize(load(pinned, backend, work), backend, script_dir)
