"""BlobBackend against a real Azure Storage emulator (Azurite); the Azure SDK is never mocked."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

import pytest
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

from aml_airflow_provider.exceptions import DatastoreError, UserErrorException
from aml_airflow_provider.storage import DatastoreConfig, open_backend
from aml_airflow_provider.storage.blob import (
    BlobBackend,
    blob_account_url,
    ensure_container,
    parse_connection_string,
)
from tests.support.files import make_tree, read_tree

MiB = 1024 * 1024
TREE = {"a.csv": b"1,2\n", "sub/b.csv": b"3,4\n", "sub/deeper/c.bin": os.urandom(5000), "z.txt": b"z"}


def key_settings(azurite, container: str) -> dict:
    return {
        "container_name": container,
        "account_name": azurite.account_name,
        "account_url": azurite.account_url,
        "credential": "account_key",
    }


@pytest.fixture
def make_backend(azurite, blob_container):
    def make(**kw) -> BlobBackend:
        kw.setdefault("retry_backoff", 0.05)
        return BlobBackend("blob_ds", key_settings(azurite, blob_container), azurite.account_key, **kw)

    return make


@pytest.fixture
def store(make_backend) -> BlobBackend:
    return make_backend()


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(MiB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sas_for(azurite, container: str, key: str | None = None, **perms) -> str:
    return generate_container_sas(
        azurite.account_name,
        container,
        account_key=key or azurite.account_key,
        permission=ContainerSasPermissions(**perms),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )


# -- moving files ---------------------------------------------------------------------------------
def test_upload_download_round_trip_is_byte_identical(store: BlobBackend, tmp_path: Path) -> None:
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(200_000))
    assert store.upload_file(src, "data/in.bin", overwrite=False) is True
    out = tmp_path / "out.bin"
    assert store.download_file("/data//in.bin", out) == 200_000
    assert out.read_bytes() == src.read_bytes()
    (listed,) = store.list_files("data/in.bin")
    assert listed.size == 200_000
    assert listed.content_md5 == md5_of(src)
    assert listed.etag
    assert not list(tmp_path.glob(".aml-tmp-*"))


def test_upload_file_keeps_existing_blob_unless_overwrite(store: BlobBackend, tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    store.upload_file(old, "f", overwrite=False)
    assert store.upload_file(new, "f", overwrite=False) is False
    store.download_file("f", tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"old"
    assert store.upload_file(new, "f", overwrite=True) is True
    store.download_file("f", tmp_path / "got")
    assert (tmp_path / "got").read_bytes() == b"new"


def test_upload_many_skips_existing_unless_overwrite(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", TREE)
    pairs = [(src / rel, f"up/{rel}") for rel in TREE]
    first = store.upload_many(pairs[:2])
    assert (first.files, first.skipped) == (2, 0)
    second = store.upload_many(pairs)
    assert (second.files, second.skipped) == (2, 2)
    (src / "a.csv").write_bytes(b"changed")
    third = store.upload_many(pairs, overwrite=True)
    assert (third.files, third.skipped) == (4, 0)
    assert store.fetch("up/a.csv", tmp_path / "back").read_bytes() == b"changed"


def test_download_many_keeps_existing_local_files_unless_overwrite(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"x": b"remote-x", "y": b"remote-y"})
    store.upload_many([(src / "x", "d/x"), (src / "y", "d/y")])
    dest = make_tree(tmp_path / "dl", {"x": b"local-x"})
    stats = store.download_many([("d/x", dest / "x"), ("d/y", dest / "new/y")])
    assert (stats.files, stats.skipped) == (1, 1)
    assert read_tree(dest) == {"x": b"local-x", "new/y": b"remote-y"}
    store.download_many([("d/x", dest / "x")], overwrite=True)
    assert (dest / "x").read_bytes() == b"remote-x"


def test_list_files_of_file_folder_and_missing_path(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"b": b"bb", "1": b"1", "c": b"ccc"})
    store.upload_many([(src / "b", "data/b.txt"), (src / "1", "data/a/1.txt"), (src / "c", "data2/c.txt")])
    assert [f.path for f in store.list_files("data")] == ["data/a/1.txt", "data/b.txt"]  # not data2/
    (single,) = store.list_files("data/b.txt")
    assert (single.path, single.size) == ("data/b.txt", 2)
    assert store.list_files("missing") == []
    assert store.list_files("data/b") == []  # a prefix of a name is not a path
    assert [f.path for f in store.list_files("")] == ["data/a/1.txt", "data/b.txt", "data2/c.txt"]


def test_list_files_skips_folder_placeholders(store: BlobBackend, azurite, blob_container) -> None:
    # Accounts with a hierarchical namespace show folders as empty blobs marked hdi_isfolder.
    raw = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(blob_container)
    raw.upload_blob("dir", b"", metadata={"hdi_isfolder": "true"})
    raw.upload_blob("dir/file.txt", b"data")
    assert [f.path for f in store.list_files("")] == ["dir/file.txt"]


def test_fetch_single_file_and_folder_keeps_layout(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", TREE)
    store.upload_many([(src / rel, f"in/{rel}") for rel in TREE])
    one = store.fetch("in/sub/b.csv", tmp_path / "one")
    assert one == tmp_path / "one" / "b.csv"  # a single file keeps its name
    assert one.read_bytes() == TREE["sub/b.csv"]
    assert store.fetch("in", tmp_path / "all") == tmp_path / "all"
    assert read_tree(tmp_path / "all") == TREE
    with pytest.raises(DatastoreError, match="No data at datastore 'blob_ds'"):
        store.fetch("nothing/here", tmp_path / "none")
    empty = store.fetch("nothing/here", tmp_path / "empty", allow_empty=True)
    assert empty.is_dir() and not any(empty.iterdir())


def test_delete_prefix_counts_blobs_and_spares_siblings(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"f": b"x"})
    store.upload_many([(src / "f", p) for p in ("d/1", "d/sub/2", "d2/3", "f")])
    assert store.delete_prefix("d") == 2
    assert store.delete_prefix("f") == 1
    assert store.delete_prefix("d") == 0
    assert [f.path for f in store.list_files("")] == ["d2/3"]
    with pytest.raises(DatastoreError, match="root"):
        store.delete_prefix("")


# -- publishing -----------------------------------------------------------------------------------
def test_publish_folder_and_single_file(store: BlobBackend, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "step_out", TREE)
    store.publish(src, "runs/1/out")
    assert read_tree(store.fetch("runs/1/out", tmp_path / "back")) == TREE
    model = tmp_path / "model.pkl"
    model.write_bytes(b"model")
    store.publish(model, "runs/1/model.pkl")
    assert store.fetch("runs/1/model.pkl", tmp_path / "m").read_bytes() == b"model"


def test_publish_failing_midway_leaves_nothing(
    store: BlobBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src", {f"part-{i:02}.csv": os.urandom(100) for i in range(10)})
    real_upload = store.upload_file
    calls = 0
    lock = threading.Lock()

    def flaky_upload(local, path, *, overwrite):
        nonlocal calls
        with lock:
            calls += 1
            fail = calls == 3
        if fail:
            raise DatastoreError("simulated network failure on the 3rd file")
        return real_upload(local, path, overwrite=overwrite)

    monkeypatch.setattr(store, "upload_file", flaky_upload)
    with pytest.raises(DatastoreError, match="3rd file"):
        store.publish(src, "out/run")
    assert store.list_files("out") == []


def test_large_file_goes_up_in_parallel_blocks(make_backend, tmp_path: Path) -> None:
    store = make_backend(
        chunk_concurrency=4,
        max_single_put_size=4 * MiB,
        max_block_size=2 * MiB,
        max_single_get_size=2 * MiB,
        max_chunk_get_size=2 * MiB,
    )
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        for _ in range(24):
            fh.write(os.urandom(MiB))
    assert store.upload_file(big, "big/big.bin", overwrite=False)
    committed, _ = store.container_client.get_blob_client("big/big.bin").get_block_list("committed")
    assert len(committed) == 12  # 24 MiB in 2 MiB blocks, not one request
    # An existing large blob is detected before any block is sent.
    assert store.upload_file(big, "big/big.bin", overwrite=False) is False
    out = tmp_path / "back.bin"
    assert store.download_file("big/big.bin", out) == 24 * MiB
    assert md5_of(out) == md5_of(big)


def test_many_small_files_round_trip(store: BlobBackend, tmp_path: Path) -> None:
    files = {f"d{i % 7}/f{i:04}.txt": os.urandom(50 + i) for i in range(320)}
    src = make_tree(tmp_path / "src", files)
    stats = store.upload_many([(src / rel, f"many/{rel}") for rel in files])
    assert (stats.files, stats.skipped, stats.bytes) == (320, 0, sum(map(len, files.values())))
    listed = store.list_files("many")
    assert len(listed) == 320
    dest = tmp_path / "dest"
    got = store.download_many([(f.path, dest / f.path.removeprefix("many/")) for f in listed])
    assert got.files == 320
    assert read_tree(dest) == files


# -- credentials and errors -----------------------------------------------------------------------
def round_trip(backend: BlobBackend, tmp_path: Path, name: str) -> bytes:
    src = tmp_path / f"{name}.in"
    src.write_bytes(name.encode() * 100)
    backend.upload_file(src, f"cred/{name}", overwrite=False)
    out = tmp_path / f"{name}.out"
    backend.download_file(f"cred/{name}", out)
    return out.read_bytes()


def test_each_credential_kind_works(azurite, blob_container, tmp_path: Path) -> None:
    settings = {"container_name": blob_container, "account_url": azurite.account_url}
    by_key = BlobBackend("ds", {**settings, "credential": "account_key"}, azurite.account_key)
    sas = sas_for(azurite, blob_container, read=True, write=True, list=True, delete=True)
    by_sas = BlobBackend("ds", {**settings, "credential": "sas_token"}, sas)
    by_conn = BlobBackend("ds", {"container_name": blob_container}, azurite.connection_string)  # inferred
    for kind, backend in (("key", by_key), ("sas", by_sas), ("conn", by_conn)):
        assert round_trip(backend, tmp_path, kind) == kind.encode() * 100
    assert by_conn.credential_kind == "connection_string"
    assert by_conn.account_name == "devstoreaccount1"
    assert [f.path for f in by_sas.list_files("cred")] == ["cred/conn", "cred/key", "cred/sas"]
    assert by_sas.delete_prefix("cred") == 3


def assert_clean(message: str, *secrets: str) -> None:
    assert "blob_ds" in message
    for secret in secrets:
        assert secret not in message
        assert unquote(secret) not in message
    assert not re.search(r"sig=(?!\*\*\*)", message)


def test_wrong_account_key_is_a_clear_error_without_the_key(
    azurite, blob_container, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong_key = "A" * 8 + azurite.account_key[8:]
    backend = BlobBackend("blob_ds", key_settings(azurite, blob_container), wrong_key)
    with caplog.at_level(logging.DEBUG), pytest.raises(DatastoreError) as err:
        backend.list_files("any")
    message = str(err.value)
    assert "check the account_key stored in" in message
    assert_clean(message, wrong_key)
    assert wrong_key not in caplog.text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_bad_sas_token_is_a_clear_error_without_the_signature(
    azurite, blob_container, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other_key = "B" * 8 + azurite.account_key[8:]
    sas = sas_for(azurite, blob_container, key=other_key, read=True, list=True)
    signature = re.search(r"sig=([^&]+)", sas).group(1)
    settings = {
        "container_name": blob_container,
        "account_url": azurite.account_url,
        "credential": "sas_token",
    }
    backend = BlobBackend("blob_ds", settings, sas)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with caplog.at_level(logging.DEBUG):
        for action in (lambda: backend.list_files(""), lambda: backend.upload_file(src, "f", overwrite=True)):
            with pytest.raises(DatastoreError) as err:
                action()
            assert "check the sas_token stored in" in str(err.value)
            assert_clean(str(err.value), signature, sas)
    assert unquote(signature) not in caplog.text and signature not in caplog.text


def test_sas_without_write_permission_says_what_to_do(azurite, blob_container, tmp_path: Path) -> None:
    sas = sas_for(azurite, blob_container, read=True, list=True)
    settings = {
        "container_name": blob_container,
        "account_url": azurite.account_url,
        "credential": "sas_token",
    }
    backend = BlobBackend("blob_ds", settings, sas, conn_id="aml_datastore_blob_ds")
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(DatastoreError, match="connection 'aml_datastore_blob_ds'") as err:
        backend.upload_file(src, "out/f", overwrite=True)
    assert_clean(str(err.value), sas, re.search(r"sig=([^&]+)", sas).group(1))


def test_missing_container_is_a_clear_error(azurite, tmp_path: Path) -> None:
    backend = BlobBackend("blob_ds", key_settings(azurite, "no-such-container"), azurite.account_key)
    src = tmp_path / "f"
    src.write_bytes(b"x")
    for action in (
        lambda: backend.list_files("a"),
        lambda: backend.upload_file(src, "a/f", overwrite=False),
        lambda: backend.download_file("a/f", tmp_path / "out"),
    ):
        with pytest.raises(DatastoreError, match="create_if_not_exists=True") as err:
            action()
        assert "container 'no-such-container'" in str(err.value)
        assert_clean(str(err.value), azurite.account_key)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".aml-tmp-*"))


def test_check_access(store: BlobBackend, azurite) -> None:
    store.check_access()
    missing = BlobBackend("blob_ds", key_settings(azurite, "no-such-container"), azurite.account_key)
    with pytest.raises(DatastoreError, match="create_if_not_exists=True"):
        missing.check_access()


def test_missing_blob_download_names_the_path(store: BlobBackend, tmp_path: Path) -> None:
    with pytest.raises(DatastoreError, match=r"datastore 'blob_ds' .* path 'nope/x'.*no such file"):
        store.download_file("nope/x", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


def test_unreachable_service_is_a_datastore_error(azurite, make_backend) -> None:
    store = make_backend(retry_total=1)
    azurite.stop()
    try:
        with pytest.raises(DatastoreError, match=r"datastore 'blob_ds' .* did not answer after 1 retries"):
            store.list_files("")
    finally:
        azurite.start()
    assert store.list_files("") == []  # usable again once the service is back


def test_ensure_container_creates_once(azurite) -> None:
    settings = key_settings(azurite, "ensure-test-container")
    assert ensure_container(settings, azurite.account_key) is True
    assert ensure_container(settings, azurite.account_key) is False
    BlobServiceClient.from_connection_string(azurite.connection_string).delete_container("ensure-test-container")
    wrong_key = "C" * 8 + azurite.account_key[8:]
    with pytest.raises(DatastoreError, match="Cannot create the container for datastore 'blob_ds'") as err:
        ensure_container(settings, wrong_key, name="blob_ds")
    assert_clean(str(err.value), wrong_key)


def test_describe_never_shows_credentials(azurite, blob_container) -> None:
    sas = sas_for(azurite, blob_container, read=True)
    backends = [
        BlobBackend("ds", key_settings(azurite, blob_container), azurite.account_key),
        BlobBackend(
            "ds",
            {"container_name": blob_container, "credential": "connection_string"},
            azurite.connection_string,
        ),
        BlobBackend("ds", {"container_name": blob_container, "account_url": f"{azurite.account_url}?{sas}"}, sas),
    ]
    for backend in backends:
        text = backend.describe("a/b")
        assert text == f"datastore 'ds' (container '{blob_container}' in account 'devstoreaccount1') path 'a/b'"
    assert "sig=" not in backends[2].account_url


def test_open_backend_opens_a_blob_datastore(azurite, blob_container, tmp_path: Path) -> None:
    extra = f'{{"container_name": "{blob_container}", "credential": "connection_string"}}'
    config = DatastoreConfig.from_connection("blob_ds", "aml_blob_datastore", extra, azurite.connection_string)
    backend = open_backend(config)
    assert isinstance(backend, BlobBackend)
    assert backend.kind == "blob"
    assert round_trip(backend, tmp_path, "opened") == b"opened" * 100


def test_importing_the_backends_does_not_import_azure() -> None:
    code = (
        "import sys, aml_airflow_provider.storage.blob, aml_airflow_provider.storage.local\n"
        "print(sorted(m for m in sys.modules if m.startswith('azure')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- registration helpers -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("acct",), "https://acct.blob.core.windows.net"),
        (("acct", "http"), "http://acct.blob.core.windows.net"),
        (("acct", None, "core.chinacloudapi.cn"), "https://acct.blob.core.chinacloudapi.cn"),
        (("acct", "https", "core.usgovcloudapi.net"), "https://acct.blob.core.usgovcloudapi.net"),
        (("devstoreaccount1", "http", "127.0.0.1:10000"), "http://127.0.0.1:10000/devstoreaccount1"),
        (("devstoreaccount1", None, "http://127.0.0.1:10000"), "http://127.0.0.1:10000/devstoreaccount1"),
        (("devstoreaccount1", None, "http://localhost:10000/"), "http://localhost:10000/devstoreaccount1"),
        (("acct", None, "127.0.0.1:10000"), "https://127.0.0.1:10000/acct"),
        (("acct", None, "https://acct.blob.core.windows.net/"), "https://acct.blob.core.windows.net"),
    ],
)
def test_blob_account_url(args, expected) -> None:
    assert blob_account_url(*args) == expected


def test_parse_connection_string(azurite) -> None:
    parsed = parse_connection_string(azurite.connection_string)
    assert parsed["account_name"] == "devstoreaccount1"
    assert parsed["account_url"] == azurite.account_url
    assert parsed["credential"] == "account_key"
    assert azurite.account_key not in str(parsed)
    china = parse_connection_string(
        "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=a2V5==;EndpointSuffix=core.chinacloudapi.cn"
    )
    assert china["account_url"] == "https://acct.blob.core.chinacloudapi.cn"
    sas_only = parse_connection_string(
        "BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=x"
    )
    assert (sas_only["account_name"], sas_only["credential"]) == ("acct", "sas_token")
    with pytest.raises(UserErrorException, match="Key=Value") as err:
        parse_connection_string("AccountName=acct;s3cr3tk3y")
    assert "s3cr3tk3y" not in str(err.value)
