"""A step's data: inputs made local before it runs, outputs staged while it runs and published after."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aml_airflow_provider._names import check_compute_path
from aml_airflow_provider.exceptions import DatastoreError, UserErrorException
from aml_airflow_provider.spec import InputSpec, OutputSpec
from aml_airflow_provider.storage.base import DatastoreBackend, remove_path, resolved_inside
from aml_airflow_provider.uris import DatastoreUri

#: Below this many free bytes a datastore's disk counts as full (see :meth:`StepData.full_disk_note`).
FULL_DISK_BYTES = 1024 * 1024


def local_subpath(base: Path, relative: str | None, *, what: str) -> Path:
    """``base / relative``, refusing absolute paths and ``..`` (a step may only write inside its folder)."""
    if not check_compute_path(relative, what):
        return base
    return base.joinpath(*PurePosixPath(relative.replace("\\", "/")).parts)


def links_out_of(folder: Path) -> list[tuple[str, str]]:
    """The symbolic links at or under ``folder`` that lead outside it (or nowhere): ``(link, target)``.

    Publishing reads through links, so a link to ``/etc`` or ``~/.ssh`` written by a script (or by a
    container, which sees only its mounts but leaves links to the worker's paths) would upload the
    worker's files.
    """
    real_root = Path(os.path.realpath(folder))
    candidates = [Path(folder)]
    for dirpath, dirnames, filenames in os.walk(folder):  # does not descend into linked folders
        candidates += [Path(dirpath, n) for n in (*dirnames, *filenames)]
    return [
        (os.path.relpath(path, folder), os.readlink(path))
        for path in candidates
        if path.is_symlink() and resolved_inside(path, real_root) is None
    ]


@dataclass
class _StagedOutput:
    name: str
    local: Path
    location: DatastoreUri
    backend: DatastoreBackend
    staging: Path | None


@dataclass
class _Upload:
    name: str
    local: Path
    location: DatastoreUri
    backend: DatastoreBackend
    overwrite: bool


class StepData:
    """Inputs and outputs of one step run.

    :param backends: opens the backend of a datastore name (cached by the caller)
    :param work_dir: the step's private folder (inputs and staged outputs go under it)
    :param script_dir: the script's working directory (``path_on_compute`` is relative to it)
    :param log: the task logger
    """

    def __init__(
        self,
        backends: Callable[[str], DatastoreBackend],
        work_dir: Path,
        script_dir: Path,
        log: logging.Logger,
    ) -> None:
        self._backends = backends
        self.work_dir = work_dir
        self.script_dir = script_dir
        self.log = log
        self._outputs: list[_StagedOutput] = []
        self._uploads: list[_Upload] = []
        self._told_about_mounts: set[str] = set()

    def _report(self, line: str) -> None:
        self.log.info("%s", line)

    # -- inputs -----------------------------------------------------------------------------------
    def prepare_input(self, port: InputSpec, location: DatastoreUri) -> Path:
        """Make the input available locally and return the path the script gets."""
        backend = self._backends(location.datastore)
        what = f"input '{port.name}'"
        if port.mode == "upload":
            local = local_subpath(self.script_dir, port.path_on_compute or port.name, what=what)
            local.mkdir(parents=True, exist_ok=True)
            self._uploads.append(_Upload(port.name, local, location, backend, port.overwrite))
            return local
        if port.mode == "mount":
            folder = backend.local_path(location.path)
            self._tell_about_mounts(backend, local=folder is not None)
            if folder is not None:
                if not folder.exists() and port.step is None:
                    raise DatastoreError(f"No data at {backend.describe(location.path)} for {what}.")
                return folder
            dest = self.work_dir / "inputs" / port.name
        else:
            dest = self.work_dir / "inputs" / port.name
            if port.path_on_compute:
                dest = local_subpath(self.script_dir, port.path_on_compute, what=what)
        # Intermediate data may legitimately be empty (a step that wrote nothing).
        return backend.fetch(
            location.path,
            dest,
            overwrite=port.mode == "mount" or port.overwrite,
            allow_empty=port.step is not None,
            report=self._report,
        )

    def _tell_about_mounts(self, backend: DatastoreBackend, *, local: bool) -> None:
        """Say once per datastore how 'mount' is delivered: there is no FUSE here (information, not an error)."""
        if backend.name in self._told_about_mounts:
            return
        self._told_about_mounts.add(backend.name)
        if local:
            self.log.info("'mount' inputs on datastore '%s' are its folder itself (no copy).", backend.name)
        else:
            self.log.info(
                "No FUSE mounts here: 'mount' inputs on datastore '%s' are downloaded before the script starts.",
                backend.name,
            )

    # -- outputs ----------------------------------------------------------------------------------
    def prepare_output(self, port: OutputSpec, location: DatastoreUri) -> Path:
        """Return the path the script writes the output to (its parent exists; the path itself does not)."""
        backend = self._backends(location.datastore)
        staging = None
        if port.mode == "upload":
            local = local_subpath(self.script_dir, port.path_on_compute, what=f"output '{port.name}'")
        else:
            # On a local datastore, stage inside it so publishing is an atomic rename.
            staging = backend.staging_dir()
            local = (staging or (self.work_dir / "outputs")) / port.name
        local.parent.mkdir(parents=True, exist_ok=True)
        self._outputs.append(_StagedOutput(port.name, local, location, backend, staging))
        return local

    def publish(self) -> dict[str, str]:
        """Publish every output (and upload-mode inputs); return output name -> ``azureml://`` URI."""
        uris: dict[str, str] = {}
        # Every output is checked before any is published: a refused one must not leave the others half-handed-on.
        for what, local in [
            *((f"output '{o.name}'", o.local) for o in self._outputs),
            *((f"input '{u.name}' (upload mode)", u.local) for u in self._uploads),
        ]:
            if os.path.lexists(local) and (links := links_out_of(local)):
                shown = ", ".join(f"{link!r} -> {target!r}" for link, target in links[:5])
                raise UserErrorException(
                    f"The script left symbolic links in {what} that lead outside it or nowhere: {shown}. Publishing "
                    "would copy what they point at: write the files themselves, or links within the output."
                )
        for out in self._outputs:
            if not out.local.exists():
                self.log.warning("The script wrote nothing to output '%s'; it is published empty.", out.name)
                out.local.mkdir(parents=True)
            # Anything already there was left by an attempt that died after writing: nobody was told
            # about it (no XCom, no reuse-index entry), so it is replaced.
            out.backend.replace(out.local, out.location.path, report=self._report)
            self.log.info("Output '%s' published to %s", out.name, out.location)
            uris[out.name] = str(out.location)
        for up in self._uploads:
            files = sorted(f for f in up.local.rglob("*") if f.is_file())
            prefix = up.location.path
            pairs = [(f, "/".join(p for p in (prefix, f.relative_to(up.local).as_posix()) if p)) for f in files]
            stats = up.backend.upload_many(pairs, overwrite=up.overwrite, report=self._report)
            self.log.info(
                "Input '%s' (upload mode): %d files uploaded to %s, %d already there",
                up.name,
                stats.files,
                up.location,
                stats.skipped,
            )
        return uris

    def full_disk_note(self) -> str:
        """Name the outputs staged on a datastore whose disk is full ('' if none): a script that failed
        with "No space left on device" names a staging path of ours, not the datastore."""
        notes = []
        for out in self._outputs:
            try:
                free = out.backend.free_space() if out.staging is not None else None
            except OSError:  # only a hint: never hide the step's own error
                free = None
            if free is not None and free < FULL_DISK_BYTES:
                notes.append(
                    f"Output '{out.name}' is written on {out.backend.describe(out.location.path)}, and its disk is "
                    f"full ({free} bytes free): free space on it, or register the datastore on a larger disk."
                )
        return " ".join(notes)

    def discard(self) -> None:
        """Remove staged outputs (after a failure, or once published)."""
        for out in self._outputs:
            if out.staging is not None:
                remove_path(out.staging)
