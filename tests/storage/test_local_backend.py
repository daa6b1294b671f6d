"""LocalBackend: a datastore in a local folder, as steps and users see it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from aml_airflow_provider.exceptions import DatastoreError
from aml_airflow_provider.storage import DatastoreConfig, open_backend
from aml_airflow_provider.storage.local import STAGING_DIR, LocalBackend
from tests.support.files import make_tree, read_tree


@pytest.fixture
def store(tmp_path: Path) -> LocalBackend:
    return LocalBackend("local_ds", tmp_path / "store")


TREE = {"a.csv": b"1,2\n", "sub/b.csv": b"3,4\n", "sub/deeper/c.bin": bytes(range(256)) * 10, "z.txt": b"z"}


def test_root_is_created_and_must_be_absolute(tmp_path: Path) -> None:
    root = tmp_path / "new" / "folder"
    backend = LocalBackend("ds", root)
    assert root.is_dir()
    assert backend.local_path("a//b/") == root / "a" / "b"
    assert backend.describe("a/b") == f"datastore 'ds' (local folder {root}) path 'a/b'"
    with pytest.raises(DatastoreError, match="not an absolute path"):
        LocalBackend("ds", "relative/folder")


def test_check_access(store: LocalBackend) -> None:
    store.check_access()
    shutil.rmtree(store.root)
    with pytest.raises(DatastoreError, match="does not exist"):
        store.check_access()


def test_upload_download_round_trip_is_byte_identical(store: LocalBackend, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(100_000))
    assert store.upload_file(src, "data/in.bin", overwrite=False) is True
    out = tmp_path / "out.bin"
    assert store.download_file("data/in.bin", out) == 100_000
    assert out.read_bytes() == src.read_bytes()
    assert not [p for p in tmp_path.rglob(".aml-tmp-*")]


def test_upload_file_keeps_existing_file_unless_overwrite(store: LocalBackend, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    store.upload_file(old, "f", overwrite=False)
    assert store.upload_file(new, "f", overwrite=False) is False
    assert (store.root / "f").read_bytes() == b"old"
    assert store.upload_file(new, "f", overwrite=True) is True
    assert (store.root / "f").read_bytes() == b"new"


def test_download_of_missing_file_names_the_location(store: LocalBackend, tmp_path: Path) -> None:
    with pytest.raises(DatastoreError, match=r"No file at datastore 'local_ds' .* path 'nope/x'"):
        store.download_file("nope/x", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_upload_many_skips_existing_unless_overwrite(store: LocalBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", TREE)
    pairs = [(src / rel, f"up/{rel}") for rel in TREE]
    first = store.upload_many(pairs[:2])
    assert (first.files, first.skipped) == (2, 0)
    second = store.upload_many(pairs)
    assert (second.files, second.skipped) == (2, 2)
    assert second.bytes == sum(len(TREE[rel]) for rel in list(TREE)[2:])
    (src / "a.csv").write_bytes(b"changed")
    third = store.upload_many(pairs, overwrite=True)
    assert (third.files, third.skipped) == (4, 0)
    assert (store.root / "up/a.csv").read_bytes() == b"changed"


def test_download_many_keeps_existing_local_files_unless_overwrite(store: LocalBackend, tmp_path: Path) -> None:
    make_tree(store.root, {"d/x": b"remote-x", "d/y": b"remote-y"})
    dest = tmp_path / "dl"
    make_tree(dest, {"x": b"local-x"})
    stats = store.download_many([("d/x", dest / "x"), ("d/y", dest / "y")])
    assert (stats.files, stats.skipped) == (1, 1)
    assert read_tree(dest) == {"x": b"local-x", "y": b"remote-y"}
    store.download_many([("d/x", dest / "x")], overwrite=True)
    assert (dest / "x").read_bytes() == b"remote-x"


def test_list_files_of_file_folder_and_missing_path(store: LocalBackend) -> None:
    make_tree(store.root, {"data/b.txt": b"bb", "data/a/1.txt": b"1", "data2/c.txt": b"ccc"})
    listed = store.list_files("data")
    assert [f.path for f in listed] == ["data/a/1.txt", "data/b.txt"]  # not data2/
    (single,) = store.list_files("/data/b.txt")
    stat = (store.root / "data/b.txt").stat()
    assert (single.path, single.size, single.etag) == ("data/b.txt", 2, f"{stat.st_mtime_ns}-2")
    assert store.list_files("missing") == []
    assert store.list_files("data/b.txt/more") == []
    assert [f.path for f in store.list_files("")] == ["data/a/1.txt", "data/b.txt", "data2/c.txt"]


def test_listing_never_shows_staging_or_temp_files(store: LocalBackend) -> None:
    make_tree(store.root, {"out/real.csv": b"x", "out/.aml-tmp-123": b"partial"})
    staging = store.staging_dir()
    assert staging.parent == store.root / STAGING_DIR
    (staging / "being-written.csv").write_bytes(b"half")
    assert [f.path for f in store.list_files("")] == ["out/real.csv"]
    assert [f.path for f in store.list_files("out")] == ["out/real.csv"]
    assert store.list_files(STAGING_DIR) == []


def test_reserved_names_cannot_be_written(store: LocalBackend, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(DatastoreError, match="reserved"):
        store.upload_file(src, f"{STAGING_DIR}/x", overwrite=True)
    with pytest.raises(DatastoreError, match="root"):
        store.upload_file(src, "", overwrite=True)


def test_fetch_single_file_and_folder_keeps_layout(store: LocalBackend, tmp_path: Path) -> None:
    make_tree(store.root, {f"in/{rel}": data for rel, data in TREE.items()})
    got = store.fetch("in/sub/b.csv", tmp_path / "one")
    assert got == tmp_path / "one" / "b.csv"  # a single file keeps its name
    assert got.read_bytes() == TREE["sub/b.csv"]
    folder = store.fetch("in", tmp_path / "all")
    assert read_tree(folder) == TREE
    with pytest.raises(DatastoreError, match="No data at datastore 'local_ds'"):
        store.fetch("nothing/here", tmp_path / "none")


def test_delete_prefix_counts_files_and_spares_siblings(store: LocalBackend) -> None:
    make_tree(store.root, {"d/1": b"", "d/sub/2": b"", "d2/3": b"", "f": b""})
    assert store.delete_prefix("d") == 2
    assert store.delete_prefix("f") == 1
    assert store.delete_prefix("d") == 0
    assert [f.path for f in store.list_files("")] == ["d2/3"]


def staging_is_empty(store: LocalBackend) -> bool:
    staging = store.root / STAGING_DIR
    return not staging.exists() or not any(staging.iterdir())


def test_publish_folder_copies_from_outside_staging(store: LocalBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "step_out", TREE)
    lines: list[str] = []
    store.publish(src, "runs/1/out", report=lines.append)
    assert read_tree(store.root / "runs/1/out") == TREE
    assert read_tree(src) == TREE  # the source is copied, not moved
    assert staging_is_empty(store)
    assert lines and "4/4 files" in lines[-1]


def test_publish_from_staging_is_a_move(store: LocalBackend) -> None:
    staging = store.staging_dir()
    make_tree(staging / "result", TREE)
    store.publish(staging / "result", "runs/2/out")
    assert read_tree(store.root / "runs/2/out") == TREE
    assert staging_is_empty(store)


def test_publish_single_file(store: LocalBackend, tmp_path: Path) -> None:
    src = tmp_path / "model.pkl"
    src.write_bytes(b"model")
    store.publish(src, "models/model.pkl")
    assert (store.root / "models/model.pkl").read_bytes() == b"model"
    assert store.fetch("models/model.pkl", tmp_path / "back").read_bytes() == b"model"
    assert staging_is_empty(store)


def test_publish_never_overwrites_an_existing_output(store: LocalBackend, tmp_path: Path) -> None:
    make_tree(store.root, {"out/old.csv": b"old"})
    src = make_tree(tmp_path / "new", {"new.csv": b"new"})
    with pytest.raises(DatastoreError, match="already exists; outputs are never overwritten"):
        store.publish(src, "out")
    staged = store.staging_dir()
    make_tree(staged, {"new.csv": b"new"})
    with pytest.raises(DatastoreError, match="already exists"):
        store.publish(staged, "out")
    assert read_tree(store.root / "out") == {"old.csv": b"old"}
    assert staging_is_empty(store)


def test_publish_failing_midway_leaves_nothing(
    store: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", TREE)
    real_copy = shutil.copyfile
    calls = []

    def failing_copy(a, b, **kw):
        calls.append(a)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real_copy(a, b, **kw)

    monkeypatch.setattr("aml_airflow_provider.storage.local.shutil.copyfile", failing_copy)
    with pytest.raises(DatastoreError, match="No space left on device"):
        store.publish(src, "out/run")
    assert len(calls) == 3
    assert store.list_files("out") == []
    assert not (store.root / "out" / "run").exists()
    assert staging_is_empty(store)


def test_publish_failing_at_the_rename_cleans_staging(
    store: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging = store.staging_dir()
    make_tree(staging, TREE)

    def failing_rename(src, dst):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("aml_airflow_provider.storage.base.os.rename", failing_rename)
    with pytest.raises(DatastoreError, match="Input/output error"):
        store.publish(staging, "out")
    assert not (store.root / "out").exists()
    assert staging_is_empty(store)


def test_publish_refuses_the_root(store: LocalBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a": b"a"})
    with pytest.raises(DatastoreError, match="root"):
        store.publish(src, "")
    staged = store.staging_dir()
    with pytest.raises(DatastoreError, match="root"):
        store.publish(staged, "/")
    assert staging_is_empty(store)


def test_open_backend_opens_a_local_datastore(tmp_path: Path) -> None:
    config = DatastoreConfig.from_connection("ds", "aml_local_datastore", {"root": str(tmp_path / "r")}, password=None)
    backend = open_backend(config)
    assert isinstance(backend, LocalBackend)
    assert backend.kind == "local"
    assert backend.root == tmp_path / "r"
