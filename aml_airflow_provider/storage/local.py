"""A datastore that is a folder on the local (or a mounted shared) filesystem.

Writers never expose partial data: single files go through a temp file and ``os.replace``, and
published outputs are assembled in the hidden ``.aml-staging`` folder under the root (on the same
filesystem) and then renamed into place in one step.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from aml_airflow_provider._names import normalize_datastore_path
from aml_airflow_provider.exceptions import DatastoreError
from aml_airflow_provider.storage.base import (
    DatastoreBackend,
    RemoteFile,
    _Progress,
    move_into_place,
    new_temp_name,
    remove_path,
)

log = logging.getLogger(__name__)

#: Hidden folder under the root where outputs are assembled before they are renamed into place.
STAGING_DIR = ".aml-staging"
#: Prefix of the temp files that become a datastore file (or a downloaded file) once complete.
TEMP_PREFIX = ".aml-tmp-"
#: ``errno`` values that mean the disk (or the writer's quota on it) is full.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


class LocalBackend(DatastoreBackend):
    """A datastore kept in a local folder.

    :param name: the datastore's name (for messages)
    :param root: absolute path of the folder; it is created if missing
    :param kw: passed to :class:`DatastoreBackend` (``file_concurrency``)
    """

    kind = "local"

    def __init__(self, name: str, root: str | os.PathLike[str], **kw) -> None:
        super().__init__(name, **kw)
        root_path = Path(root).expanduser()
        if not root_path.is_absolute():
            # A relative root would depend on the worker's current directory.
            raise DatastoreError(
                f"Datastore '{name}': the root folder {str(root)!r} is not an absolute path; "
                "register the datastore with an absolute folder."
            )
        try:
            root_path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatastoreError(f"Datastore '{name}': cannot create its root folder {root_path}: {exc}") from exc
        if not root_path.is_dir():
            raise DatastoreError(f"Datastore '{name}': its root {root_path} exists but is not a folder.")
        self.root = root_path

    # -- paths ------------------------------------------------------------------------------------
    @staticmethod
    def _is_reserved(path: str) -> bool:
        return path.split("/", 1)[0] == STAGING_DIR or path.rsplit("/", 1)[-1].startswith(TEMP_PREFIX)

    def _target(self, path: str, action: str) -> tuple[str, Path]:
        """Normalise ``path`` for a write/delete and refuse the root and the backend's own hidden entries."""
        path = normalize_datastore_path(path)
        if not path:
            raise DatastoreError(f"Refusing to {action} the root of datastore '{self.name}'; give a path in it.")
        if self._is_reserved(path):
            raise DatastoreError(
                f"Cannot {action} {self.describe(path)}: names starting with '{STAGING_DIR}' or "
                f"'{TEMP_PREFIX}' are reserved for the datastore's own temporary files."
            )
        return path, self.root / path

    def _staging_root(self) -> Path:
        return self.root / STAGING_DIR

    def local_path(self, path: str) -> Path | None:
        """``root / path``: steps on this machine can read and write the datastore directly."""
        return self.root / normalize_datastore_path(path)

    def describe(self, path: str = "") -> str:
        """E.g. ``datastore 'ds' (local folder /data/ds) path 'a/b'``.

        :param path: a path on the datastore
        """
        return f"datastore '{self.name}' (local folder {self.root}) path '{path}'"

    def browse_url(self, path: str = "") -> str:
        return (self.root / normalize_datastore_path(path)).as_uri()

    def free_space(self) -> int:
        """Bytes that can still be written under the root (what ``df`` shows as available)."""
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def _write_error(self, exc: OSError, action: str, path: str) -> DatastoreError:
        """The error of a failed write onto the datastore; a full disk is said in so many words."""
        if exc.errno not in _NO_SPACE:
            return DatastoreError(f"{action} {self.describe(path)}: {exc}")
        try:
            free = f"{self.free_space()} bytes free"
        except OSError:
            free = "free space unknown"
        # The bare OSError names a temp file of ours, which tells a user nothing.
        return DatastoreError(
            f"{action} {self.describe(path)}: its disk is full ([Errno {exc.errno}] {exc.strerror}; {free}). "
            "Free space on it, or register the datastore on a larger disk, then retry."
        )

    def check_access(self) -> None:
        """Fail now, with a :class:`DatastoreError`, if this worker cannot read and write the root."""
        if not self.root.is_dir():
            raise DatastoreError(f"The folder of {self.describe()} does not exist (is the share mounted?).")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise DatastoreError(
                f"This worker (uid {os.getuid()}) cannot read and write the folder of {self.describe()}; "
                "fix its permissions."
            )

    # -- primitives -------------------------------------------------------------------------------
    def list_files(self, path: str) -> list[RemoteFile]:
        """Every file at or under ``path``, sorted; staging and temp entries are never listed.

        :param path: a path on the datastore ('' for everything)
        """
        path = normalize_datastore_path(path)
        if path and self._is_reserved(path):
            return []
        target = self.root / path
        try:
            if target.is_file():
                return [_remote(path, target.stat())]
            if not target.is_dir():
                return []
            files: list[RemoteFile] = []
            for dirpath, dirnames, filenames in os.walk(target):
                rel_dir = Path(dirpath).relative_to(self.root).as_posix()
                prefix = "" if rel_dir == "." else rel_dir + "/"
                # Prune hidden work folders so outputs being assembled are never seen.
                at_root = prefix == ""
                dirnames[:] = [
                    d for d in dirnames if not d.startswith(TEMP_PREFIX) and not (at_root and d == STAGING_DIR)
                ]
                for filename in filenames:
                    if filename.startswith(TEMP_PREFIX):
                        continue
                    try:
                        st = os.stat(os.path.join(dirpath, filename))
                    except FileNotFoundError:  # deleted (or a dangling symlink) while we were listing
                        continue
                    files.append(_remote(prefix + filename, st))
        except OSError as exc:
            raise DatastoreError(f"Cannot list {self.describe(path)}: {exc}") from exc
        files.sort(key=lambda f: f.path)
        return files

    def upload_file(self, local: Path, path: str, *, overwrite: bool) -> bool:
        """Copy ``local`` to ``path`` through a temp file, so readers never see a partial file.

        :param local: the local file
        :param path: destination on the datastore
        :param overwrite: replace an existing file; if False and it exists, do nothing and return False
        """
        path, dest = self._target(path, "write")
        if dest.is_dir():
            raise DatastoreError(f"Cannot write {self.describe(path)}: it is a folder.")
        if not overwrite and dest.exists():
            return False
        tmp: Path | None = None
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.parent / new_temp_name(TEMP_PREFIX)
            shutil.copyfile(local, tmp)
            if overwrite:
                os.replace(tmp, dest)
            elif not _place_no_clobber(tmp, dest):
                return False
            tmp = None
        except OSError as exc:
            raise self._write_error(exc, f"Cannot copy {local} to", path) from exc
        finally:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
        return True

    def download_file(self, path: str, local: Path) -> int:
        """Copy the file at ``path`` to ``local`` through a temp file next to it; return its size.

        :param path: a file on the datastore
        :param local: the local destination (its folder must exist)
        """
        path = normalize_datastore_path(path)
        src = self.root / path
        if not path or self._is_reserved(path) or not src.is_file():
            raise DatastoreError(f"No file at {self.describe(path)}.")
        local = Path(local)
        tmp = local.parent / new_temp_name(TEMP_PREFIX)
        try:
            shutil.copyfile(src, tmp)
            size = tmp.stat().st_size
            os.replace(tmp, local)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DatastoreError(f"Cannot copy {self.describe(path)} to {local}: {exc}") from exc
        return size

    def delete_prefix(self, path: str) -> int:
        """Delete the file or folder tree at ``path``; return how many files were removed.

        :param path: a path on the datastore (not the root)
        """
        path, target = self._target(path, "delete")
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
                return 1
            if not target.is_dir():
                return 0
            count = sum(len(filenames) for _, _, filenames in os.walk(target))
            shutil.rmtree(target)
        except FileNotFoundError:  # removed by someone else meanwhile: the goal is reached
            return 0
        except OSError as exc:
            raise DatastoreError(f"Cannot delete {self.describe(path)}: {exc}") from exc
        return count

    # -- step outputs -----------------------------------------------------------------------------
    def staging_dir(self) -> Path:
        """A new folder under ``root/.aml-staging``: data written there can be published by a rename."""
        staging = self._staging_root() / uuid.uuid4().hex
        staging.mkdir(parents=True)
        return staging

    def publish(self, src: Path, path: str, *, report: Callable[[str], None] | None = None) -> None:
        """Make ``src`` (a file or folder) the content of ``path``, which must not exist yet.

        ``src`` inside :meth:`staging_dir` is renamed into place; anything else is first copied into
        a new staging folder. Either way ``path`` appears complete in one rename, and the staging
        folder is removed afterwards, whether publishing worked or not.

        :param src: the local file or folder to publish
        :param path: the destination on the datastore
        :param report: called with progress lines while copying
        """
        src = Path(src)
        staging_root = self._staging_root().resolve()
        src_abs = src.resolve()
        own_staging: Path | None = None
        if src_abs.is_relative_to(staging_root):
            rel = src_abs.relative_to(staging_root).parts
            if not rel:
                raise DatastoreError(f"Cannot publish the whole staging folder of datastore '{self.name}'.")
            own_staging = staging_root / rel[0]  # removed below, whatever happens
        try:
            path, dest = self._target(path, "publish onto")
            if not src.exists():
                raise DatastoreError(f"Nothing to publish to {self.describe(path)}: {src} does not exist.")
            if dest.exists() or dest.is_symlink():
                raise DatastoreError(
                    f"Output location {self.describe(path)} already exists; outputs are never overwritten. "
                    "Publish to a new path or delete the old output first."
                )
            if own_staging is None:
                own_staging = self.staging_dir()
                staged = own_staging / (src.name or "data")
                _copy_tree(src, staged, _Progress("Copied", _count_files(src), report))
            else:
                staged = src_abs
            move_into_place(staged, dest)
            log.info("Published %s", self.describe(path))
        except OSError as exc:
            raise self._write_error(exc, f"Cannot publish {src} to", path) from exc
        finally:
            if own_staging is not None:
                remove_path(own_staging)


def _remote(path: str, st: os.stat_result) -> RemoteFile:
    return RemoteFile(path=path, size=st.st_size, etag=f"{st.st_mtime_ns}-{st.st_size}")


def _place_no_clobber(tmp: Path, dest: Path) -> bool:
    """Move ``tmp`` to ``dest`` unless ``dest`` exists (also if it appears meanwhile); True if moved."""
    try:
        # link() fails if dest exists, so two concurrent writers cannot replace each other's file.
        os.link(tmp, dest)
    except FileExistsError:
        return False
    except OSError:
        # Filesystems without hard links: fall back to check-then-rename.
        if dest.exists():
            return False
        os.replace(tmp, dest)
        return True
    tmp.unlink()
    return True


def _count_files(src: Path) -> int:
    if not src.is_dir():
        return 1
    return sum(len(filenames) for _, _, filenames in _walk(src))


def _walk(src: Path):
    """``os.walk`` that follows symlinked folders (their content is the output) but not into loops."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        yield dirpath, dirnames, filenames


def _copy_tree(src: Path, dest: Path, progress: _Progress) -> None:
    """Copy a file or a folder tree, reporting progress per file; stop at the first error."""
    if not src.is_dir():
        shutil.copyfile(src, dest)
        progress.add(dest.stat().st_size)
        progress.finish()
        return
    for dirpath, _, filenames in _walk(src):
        out_dir = dest / Path(dirpath).relative_to(src)
        out_dir.mkdir(parents=True, exist_ok=True)
        for filename in filenames:
            source = os.path.join(dirpath, filename)
            if not os.path.isfile(source):
                # Like the blob upload of an output: only regular files are data.
                log.warning("Not publishing %s: not a regular file (a dangling symlink?)", source)
                continue
            target = out_dir / filename
            shutil.copyfile(source, target)
            progress.add(target.stat().st_size)
    progress.finish()
