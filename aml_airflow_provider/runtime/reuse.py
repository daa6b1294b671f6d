"""Step reuse: fingerprints over everything a step's result depends on, and an index on the datastore.

Unlike SDK v1, the fingerprint covers the *content* of every input (a blob's MD5/ETag and size, a
local file's sha256; for intermediate data, the fingerprint of the step run that produced it), so
changed data is detected, and a miss is explained component by component against the most recent
run of the same step. The index lives on the pipeline's default datastore, so every worker sees it:

    azureml/reuse/fingerprints/<fingerprint>.json   the step run that produced it, and its outputs
    azureml/reuse/steps/<dag id>/<task id>.json      the most recent run of that step (for explanations)

Entries are written only after a step's outputs are published, each as one atomic write, so two runs
with one fingerprint can race without corrupting the index or pointing it at partial outputs.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aml_airflow_provider.runtime.snapshot import file_sha256
from aml_airflow_provider.storage.base import DatastoreBackend

REUSE_ROOT = "azureml/reuse"


def digest(value: Any) -> str:
    """sha256 of a JSON value's canonical form."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def data_identity(backend: DatastoreBackend, path: str) -> dict[str, Any]:
    """The content identity of the data at ``path``: its files' relative paths, sizes and content ids.

    Blob files are identified by their MD5 (or ETag when the store kept none), local files by their
    sha256. ``etag`` is set for a single file, to explain a change in the store's own terms.
    """
    files = backend.list_files(path)
    local_root = backend.local_path("")
    entries = []
    for f in files:
        rel = f.path[len(path) + 1 :] if f.path != path else ""
        if local_root is not None:
            content = file_sha256(local_root / f.path)
        else:
            content = f.content_md5 or f.etag or ""
        entries.append([rel, f.size, content])
    single = len(files) == 1 and files[0].path == path
    etag = (entries[0][2] if local_root is not None else files[0].etag) if single else None
    return {"id": digest(entries), "files": len(files), "etag": etag}


@dataclass(frozen=True)
class Fingerprint:
    """What a step's result depends on; its :attr:`id` keys the reuse index."""

    components: Mapping[str, Any]

    @property
    def id(self) -> str:
        return digest(self.components)


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:8] if len(text) >= 32 and isinstance(value, str) else text


def explain(
    previous: Mapping[str, Any] | None,
    current: Mapping[str, Any],
    snapshot_diff: Callable[[str, str], list[str]] | None = None,
) -> list[str]:
    """Why ``current`` differs from the most recent run's components, one reason per change."""
    if previous is None:
        return ["no earlier run of this step was recorded"]
    reasons: list[str] = []
    for key in sorted(set(previous) | set(current)):
        old, new = previous.get(key), current.get(key)
        if old == new:
            continue
        if key == "inputs":
            reasons += _explain_inputs(old or {}, new or {})
        elif key == "parameters":
            for name in sorted(set(old or {}) | set(new or {})):
                if (old or {}).get(name) != (new or {}).get(name):
                    reasons.append(f"parameter '{name}' changed ({(old or {}).get(name)!r}→{(new or {}).get(name)!r})")
        elif key == "snapshot":
            changed = snapshot_diff(old, new) if snapshot_diff and old and new else []
            reasons.append(
                "script snapshot changed: " + (", ".join(changed) if changed else f"{_short(old)}→{_short(new)}")
            )
        else:
            reasons.append(f"{key} changed ({_short(old)}→{_short(new)})")
    return reasons


def _explain_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    reasons = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if before is None or after is None:
            reasons.append(f"input '{name}' {'added' if before is None else 'removed'}")
        elif "producer" in after or "producer" in before:
            reasons.append(
                f"input '{name}' changed (produced by a step run with fingerprint "
                f"{_short(before.get('producer'))}→{_short(after.get('producer'))})"
            )
        elif before.get("etag") and after.get("etag"):
            reasons.append(f"input '{name}' changed (etag {_short(before['etag'])}→{_short(after['etag'])})")
        else:
            reasons.append(
                f"input '{name}' changed ({before.get('files')}→{after.get('files')} files, "
                f"content {_short(before.get('id'))}→{_short(after.get('id'))})"
            )
    return reasons


class ReuseIndex:
    """The reuse index on a datastore.

    :param backend: the (default) datastore holding it
    """

    def __init__(self, backend: DatastoreBackend) -> None:
        self.backend = backend

    def _read(self, path: str) -> dict[str, Any] | None:
        if not self.backend.list_files(path):
            return None
        with tempfile.TemporaryDirectory(prefix="aml-reuse-") as tmp:
            local = Path(tmp) / "entry.json"
            self.backend.download_many([(path, local)], overwrite=True)
            return json.loads(local.read_text(encoding="utf-8"))

    def _write(self, path: str, entry: Mapping[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="aml-reuse-") as tmp:
            local = Path(tmp) / "entry.json"
            local.write_text(json.dumps(dict(entry), sort_keys=True, default=str), encoding="utf-8")
            # One file each, replaced whole: a reader sees the old entry or the new one.
            self.backend.upload_many([(local, path)], overwrite=True)

    @staticmethod
    def _fingerprint_path(fingerprint: str) -> str:
        return f"{REUSE_ROOT}/fingerprints/{fingerprint}.json"

    @staticmethod
    def _step_path(dag_id: str, task_id: str) -> str:
        return f"{REUSE_ROOT}/steps/{dag_id}/{task_id}.json"

    def lookup(self, fingerprint: str) -> dict[str, Any] | None:
        return self._read(self._fingerprint_path(fingerprint))

    def latest(self, dag_id: str, task_id: str) -> dict[str, Any] | None:
        return self._read(self._step_path(dag_id, task_id))

    def record(self, entry: Mapping[str, Any], *, dag_id: str, task_id: str, reusable: bool) -> None:
        """Remember a finished step run (as reusable only if its outputs may be reused)."""
        if reusable:
            self._write(self._fingerprint_path(entry["fingerprint"]), entry)
        self._write(self._step_path(dag_id, task_id), entry)
