"""Source snapshots: which files count, limits, content-addressed storage, restore."""

from __future__ import annotations

from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import DatastoreError, SnapshotTooLargeError
from aml_airflow_provider.runtime import snapshot
from aml_airflow_provider.storage.local import LocalBackend


def make(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def paths(snap: snapshot.Snapshot) -> list[str]:
    return [f.path for f in snap.files]


@pytest.fixture
def store(tmp_path) -> LocalBackend:
    return LocalBackend("snapstore", tmp_path / "store")


def test_amlignore_wins_over_gitignore_and_v1_defaults_always_apply(tmp_path):
    src = make(
        tmp_path / "src",
        {
            "train.py": "x",
            "data/big.csv": "1",
            "notes.md": "n",
            ".git/HEAD": "ref",
            "__pycache__/a.pyc": "",
            "outputs/old.txt": "o",
            "azureml-logs/70.txt": "l",
            "sub/keep.log": "k",
            "sub/drop.log": "d",
            ".gitignore": "notes.md\n",
            ".amlignore": "data/\n*.log\n!keep.log\n",
        },
    )
    assert paths(snapshot.scan(src)) == [".amlignore", ".gitignore", "notes.md", "sub/keep.log", "train.py"]
    (src / ".amlignore").unlink()  # then .gitignore applies
    assert paths(snapshot.scan(src)) == [".gitignore", "data/big.csv", "sub/drop.log", "sub/keep.log", "train.py"]
    assert snapshot.ignore_file(src) == src / ".gitignore"


def test_snapshot_id_is_the_content_not_the_timestamps(tmp_path):
    a = make(tmp_path / "a", {"train.py": "print(1)", "lib/u.py": "u"})
    b = make(tmp_path / "b", {"train.py": "print(1)", "lib/u.py": "u"})
    assert snapshot.scan(a).id == snapshot.scan(b).id
    (b / "lib/u.py").write_text("changed")
    assert snapshot.scan(a).id != snapshot.scan(b).id
    assert snapshot.diff(snapshot.scan(a), snapshot.scan(b)) == ["lib/u.py"]


def test_too_big_names_the_biggest_files_and_the_ignore_file(tmp_path, monkeypatch):
    src = make(tmp_path / "src", {"train.py": "x", ".amlignore": "*.tmp\n"})
    (src / "model.bin").write_bytes(b"0" * 3_000_000)
    (src / "data.parquet").write_bytes(b"0" * 2_000_000)
    monkeypatch.setenv(snapshot.MAX_MB_VARIABLE, "1")
    with pytest.raises(SnapshotTooLargeError) as err:
        snapshot.scan(src)
    message = str(err.value)
    assert "model.bin (3.0 MB), data.parquet (2.0 MB)" in message
    assert str(src / ".amlignore") in message and snapshot.MAX_MB_VARIABLE in message
    monkeypatch.setenv(snapshot.MAX_MB_VARIABLE, "100")
    monkeypatch.setenv(snapshot.MAX_FILES_VARIABLE, "2")
    with pytest.raises(SnapshotTooLargeError, match="4 files"):
        snapshot.scan(src)


def test_an_unchanged_folder_is_stored_once_and_restores_exactly(tmp_path, store):
    src = make(tmp_path / "src", {"train.py": "print('hi')", "lib/u.py": "u", "lib/same.py": "u"})
    (src / "run.sh").write_text("#!/bin/sh\n")
    (src / "run.sh").chmod(0o755)
    first = snapshot.take(src, store)
    stored = store.list_files(snapshot.SNAPSHOT_ROOT)
    assert len(stored) == 4  # three distinct contents (two files share one) + the manifest
    assert snapshot.take(src, store) == first
    assert store.list_files(snapshot.SNAPSHOT_ROOT) == stored  # nothing written again
    (src / "train.py").write_text("print('changed')")
    second = snapshot.take(src, store)
    assert len(store.list_files(snapshot.SNAPSHOT_ROOT)) == 6  # one new file + one new manifest
    assert snapshot.diff_stored(store, first, second) == ["train.py"]

    out = tmp_path / "restored"
    snapshot.materialize(snapshot.load(first, store, tmp_path), store, out)
    assert (out / "train.py").read_text() == "print('hi')" and (out / "lib/same.py").read_text() == "u"
    assert (out / "run.sh").stat().st_mode & 0o100


def test_a_corrupted_store_is_detected_when_a_snapshot_is_restored(tmp_path, store):
    src = make(tmp_path / "src", {"train.py": "print('hi')"})
    snap_id = snapshot.take(src, store)
    (blob,) = [f.path for f in store.list_files(f"{snapshot.SNAPSHOT_ROOT}/files")]
    (store.root / blob).write_text("tampered")
    with pytest.raises(DatastoreError, match=r"train\.py does not match its hash"):
        snapshot.materialize(snapshot.load(snap_id, store, tmp_path), store, tmp_path / "out")
    with pytest.raises(DatastoreError, match="is not on"):
        snapshot.load("0" * 64, store, tmp_path)
