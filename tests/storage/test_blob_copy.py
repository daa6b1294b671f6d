"""Verified datastore copies (DataTransferStep) against a real Azurite serving two accounts; nothing is mocked."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.core.exceptions import AzureError, ResourceNotFoundError, ServiceResponseError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, ContentSettings, generate_container_sas

from aml_airflow_provider.exceptions import DatastoreError
from aml_airflow_provider.storage.blob import BlobBackend
from aml_airflow_provider.storage.copy import copy_blobs, copy_files
from aml_airflow_provider.storage.local import LocalBackend
from tests.support.azurite import ACCOUNT_NAME, SECOND_ACCOUNT_NAME
from tests.support.files import make_tree, read_tree

MiB = 1024 * 1024
TREE = {
    "a.csv": b"1,2\n3,4\n",
    "sub/b.csv": b"5,6\n",
    "sub/deeper/c.bin": os.urandom(300_000),
    "empty.txt": b"",
    "with space/ünïcode #1.csv": b"7,8\n",
}
ACCOUNTS = pytest.mark.parametrize(
    "dst_account", [ACCOUNT_NAME, SECOND_ACCOUNT_NAME], ids=["same-account", "cross-account"]
)


@pytest.fixture
def make_store(azurite_two_accounts):
    """``make_store(account)``: a blob datastore on a new container of that account (account-key credential)."""
    server = azurite_two_accounts
    made: list[tuple[BlobServiceClient, str]] = []

    def make(account: str = ACCOUNT_NAME, name: str = "ds", **kw) -> BlobBackend:
        container = f"copy-{uuid.uuid4().hex}"
        service = BlobServiceClient.from_connection_string(server.connection_string_of(account))
        service.create_container(container)
        made.append((service, container))
        kw.setdefault("retry_backoff", 0.05)
        settings = {
            "container_name": container,
            "account_name": account,
            "account_url": server.account_url_of(account),
            "credential": "account_key",
        }
        return BlobBackend(name, settings, server.accounts[account], **kw)

    yield make
    if server.running:  # a failed fault test may have left it stopped
        for service, container in made:
            with contextlib.suppress(ResourceNotFoundError):
                service.delete_container(container)


def put(store: BlobBackend, files: dict[str, bytes], prefix: str = "") -> None:
    """Upload in single requests, so the service gives every blob a Content-MD5 (as for most real data)."""
    for rel, data in files.items():
        store.container_client.upload_blob(f"{prefix}{rel}", data, overwrite=True)


def read_blobs(store: BlobBackend, prefix: str = "") -> dict[str, bytes]:
    client = store.container_client
    return {
        b.name[len(prefix) :]: client.download_blob(b.name).readall()
        for b in client.list_blobs(name_starts_with=prefix or None)
    }


def md5_property(store: BlobBackend, name: str) -> str | None:
    md5 = store.container_client.get_blob_client(name).get_blob_properties().content_settings.content_md5
    return bytes(md5).hex() if md5 else None


def spoil_md5(store: BlobBackend, name: str) -> str:
    """Set a wrong Content-MD5 on a blob (as a corrupt source or a bad upload tool would); return it in hex."""
    wrong = hashlib.md5(b"not the content").digest()
    client = store.container_client.get_blob_client(name)
    settings = client.get_blob_properties().content_settings
    settings.content_md5 = wrong
    client.set_http_headers(settings)
    return wrong.hex()


# -- blob to blob ---------------------------------------------------------------------------------
@ACCOUNTS
def test_directory_copy_keeps_relative_paths_contents_and_properties(make_store, dst_account) -> None:
    src, dst = make_store(ACCOUNT_NAME, "src_ds"), make_store(dst_account, "dst_ds")
    put(src, TREE, "in/")
    put(src, {"x.csv": b"not part of the folder"}, "in2/")
    src.container_client.upload_blob(
        "in/typed.csv", b"h\n1\n", content_settings=ContentSettings(content_type="text/csv"), metadata={"origin": "t"}
    )

    stats = copy_blobs(src, "in", dst, "out/copied", directory=True, overwrite=False)

    expected = {**TREE, "typed.csv": b"h\n1\n"}
    assert read_blobs(dst, "out/copied/") == expected
    assert read_blobs(dst).keys() == {f"out/copied/{rel}" for rel in expected}
    assert (stats.files, stats.skipped, stats.bytes, stats.server_side) == (
        len(expected),
        0,
        sum(map(len, expected.values())),
        True,
    )
    for rel in expected:
        assert md5_property(dst, f"out/copied/{rel}") == md5_property(src, f"in/{rel}") is not None
    typed = dst.container_client.get_blob_client("out/copied/typed.csv").get_blob_properties()
    assert (typed.content_settings.content_type, typed.metadata) == ("text/csv", {"origin": "t"})


@ACCOUNTS
def test_single_blob_copy_to_a_new_name(make_store, dst_account) -> None:
    src, dst = make_store(ACCOUNT_NAME), make_store(dst_account)
    put(src, TREE, "in/")

    stats = copy_blobs(src, "in/sub/deeper/c.bin", dst, "elsewhere/renamed.bin", directory=False, overwrite=False)

    assert read_blobs(dst) == {"elsewhere/renamed.bin": TREE["sub/deeper/c.bin"]}
    assert (stats.files, stats.bytes, stats.server_side) == (1, len(TREE["sub/deeper/c.bin"]), True)


def test_large_blob_is_copied_server_side_in_parallel_blocks(make_store, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # the SDK logs every request at DEBUG: none may carry a signature
    src, dst = make_store(ACCOUNT_NAME), make_store(SECOND_ACCOUNT_NAME)
    data = os.urandom(20 * MiB + 12345)
    put(src, {"big.bin": data})
    lines: list[str] = []

    stats = copy_blobs(
        src, "big.bin", dst, "copy/big.bin", directory=False, overwrite=False, block_size=4 * MiB, report=lines.append
    )

    assert stats.server_side and stats.files == 1 and stats.bytes == len(data)
    blob = dst.container_client.get_blob_client("copy/big.bin")
    committed, _ = blob.get_block_list("committed")
    # Six 4 MiB ranges staged by the service: the worker never held the data.
    assert [b.size for b in committed] == [4 * MiB] * 5 + [len(data) - 20 * MiB]
    assert hashlib.md5(blob.download_blob().readall()).hexdigest() == hashlib.md5(data).hexdigest()
    # The commit carries the source's Content-MD5, so later copies and downloads can verify it.
    assert md5_property(dst, "copy/big.bin") == hashlib.md5(data).hexdigest()
    assert lines and re.fullmatch(r"copied 1/1 files, 20\.0 MiB in [\d.]+ s, [\d.]+ MB/s", lines[-1])
    assert not re.search(r"sig=(?!\*)", caplog.text)
    assert src._secret not in caplog.text and dst._secret not in caplog.text


@pytest.mark.parametrize("overwrite", [False, True], ids=["keep-existing", "overwrite"])
def test_existing_destination_blobs_are_kept_or_replaced(make_store, overwrite) -> None:
    src, dst = make_store(), make_store()
    put(src, TREE, "in/")
    put(dst, {"a.csv": b"old", "unrelated.txt": b"stays"}, "out/")

    stats = copy_blobs(src, "in", dst, "out", directory=True, overwrite=overwrite)

    got = read_blobs(dst, "out/")
    assert got["a.csv"] == (TREE["a.csv"] if overwrite else b"old")
    assert got == {**TREE, "a.csv": got["a.csv"], "unrelated.txt": b"stays"}
    assert (stats.files, stats.skipped) == ((len(TREE), 0) if overwrite else (len(TREE) - 1, 1))


def test_copies_within_an_account_are_one_checked_request_per_blob(make_store) -> None:
    src, dst = make_store(), make_store()
    put(src, TREE, "in/")
    sent: list[dict[str, str]] = []

    def record(request) -> None:
        if request.http_request.method == "PUT":
            sent.append(dict(request.http_request.headers))

    dst._client_options["raw_request_hook"] = record

    stats = copy_blobs(src, "in", dst, "out", directory=True, overwrite=False)

    assert read_blobs(dst, "out/") == TREE and stats.files == len(TREE)
    # Copy Blob From URL, synchronous, once per blob, carrying the source's MD5 for Azure to check the
    # bytes it read against (Azurite, which copies by reference, does not check it).
    assert len(sent) == len(TREE)
    for headers in sent:
        assert headers["x-ms-requires-sync"] == "True" and headers["x-ms-copy-source"].startswith(src.account_url)
        assert headers["If-None-Match"] == "*"  # overwrite=False holds against racing writers too
    source_md5s = {base64.b64encode(bytes.fromhex(md5_property(src, f"in/{rel}"))).decode() for rel in TREE}
    assert {headers["x-ms-source-content-md5"] for headers in sent} == source_md5s
    for rel in TREE:
        assert md5_property(dst, f"out/{rel}") == md5_property(src, f"in/{rel}")


def test_large_blobs_within_an_account_take_copy_blob_and_are_waited_for(make_store, monkeypatch) -> None:
    monkeypatch.setattr("aml_airflow_provider.storage.copy.SYNC_COPY_LIMIT", MiB)
    src, dst = make_store(), make_store()
    data = os.urandom(3 * MiB + 7)
    put(src, {"big.bin": data, "small.bin": b"s"})
    statuses: list[str] = []

    def pending_at_first(response) -> None:
        # Azure may answer a Copy Blob before it is done: the copy must be waited for.
        headers = response.http_response.headers
        if response.http_request.method == "PUT" and "x-ms-copy-status" in headers and not statuses:
            headers["x-ms-copy-status"] = "pending"
        if "x-ms-copy-status" in headers:
            statuses.append(headers["x-ms-copy-status"])

    dst._client_options["raw_response_hook"] = pending_at_first

    stats = copy_blobs(src, "", dst, "copy", directory=True, overwrite=False)

    assert read_blobs(dst, "copy/") == {"big.bin": data, "small.bin": b"s"} and stats.files == 2
    assert statuses[0] == "pending" and "success" in statuses[1:]
    assert md5_property(dst, "copy/big.bin") == hashlib.md5(data).hexdigest()


def test_a_failed_copy_blob_is_deleted_and_explained(make_store, monkeypatch) -> None:
    monkeypatch.setattr("aml_airflow_provider.storage.copy.SYNC_COPY_LIMIT", MiB)
    src, dst = make_store(), make_store()
    put(src, {"big.bin": os.urandom(2 * MiB)})

    def fails(response) -> None:
        headers = response.http_response.headers
        if "x-ms-copy-status" in headers:
            pending = response.http_request.method == "PUT"
            headers["x-ms-copy-status"] = "pending" if pending else "failed"
            headers["x-ms-copy-status-description"] = "500 InternalError while reading the source"

    dst._client_options["raw_response_hook"] = fails

    with pytest.raises(DatastoreError, match=r"ended failed: 500 InternalError while reading the source") as info:
        copy_blobs(src, "big.bin", dst, "copy.bin", directory=False, overwrite=False)

    assert "the destination blob was deleted" in str(info.value)
    assert read_blobs(dst) == {}


def test_corrupt_source_fails_the_copy_and_removes_what_it_created(make_store) -> None:
    # Across accounts the bytes move (Put Block From URL) and the service hashes what it read.
    src, dst = make_store(), make_store(SECOND_ACCOUNT_NAME)
    many = {f"part-{i:03d}.csv": f"{i}\n".encode() for i in range(40)}
    put(src, many, "in/")
    wrong = spoil_md5(src, "in/part-020.csv")
    put(dst, {"part-000.csv": b"was here before"}, "out/")

    with pytest.raises(DatastoreError) as info:
        copy_blobs(src, "in", dst, "out", directory=True, overwrite=False, concurrency=4)

    message = str(info.value)
    assert "in/part-020.csv" in message and wrong in message
    assert hashlib.md5(b"20\n").hexdigest() in message  # what the service computed from the bytes
    # The blobs copied before the failure are gone again; the pre-existing one is untouched.
    assert read_blobs(dst) == {"out/part-000.csv": b"was here before"}


def test_a_copy_whose_properties_were_tampered_with_is_deleted(make_store) -> None:
    src, dst = make_store(), make_store(SECOND_ACCOUNT_NAME)
    data = os.urandom(3 * MiB)
    put(src, {"big.bin": data})
    bogus = hashlib.md5(b"tampered").digest()

    def tamper(request) -> None:
        # Stands in for a store that records something else than what it was sent.
        http = request.http_request
        if http.method == "PUT" and "comp=blocklist" in http.url:
            http.headers["x-ms-blob-content-md5"] = base64.b64encode(bogus).decode()

    dst._client_options["raw_request_hook"] = tamper  # before the client is built

    with pytest.raises(DatastoreError, match="failed verification") as info:
        copy_blobs(src, "big.bin", dst, "big.bin", directory=False, overwrite=False, block_size=1 * MiB)

    assert bogus.hex() in str(info.value) and hashlib.md5(data).hexdigest() in str(info.value)
    assert "the bad copy was deleted" in str(info.value)
    assert read_blobs(dst) == {}


def test_copy_survives_the_service_going_away_for_a_few_seconds(azurite_two_accounts, make_store) -> None:
    server = azurite_two_accounts
    src = make_store(retry_total=0)
    dst = make_store(retry_total=0)
    files = {f"day={i // 50}/part-{i:04d}.bin": os.urandom(2000 + i) for i in range(400)}
    put(src, files, "in/")
    watcher = BlobServiceClient.from_connection_string(server.connection_string_of(ACCOUNT_NAME))
    dst_listing = watcher.get_container_client(dst.container_name)
    copying = threading.Event()
    outage: dict[str, object] = {}

    def outage_midway() -> None:
        copying.wait()
        while copying.is_set():
            with contextlib.suppress(AzureError):
                if sum(1 for _ in dst_listing.list_blobs(name_starts_with="out/")) >= 20:
                    break
            time.sleep(0.02)
        outage["during_copy"] = copying.is_set()
        try:
            server.restart(downtime=3.0)
        except BaseException as exc:  # reported by the test below, not lost in this thread
            outage["error"] = exc

    thread = threading.Thread(target=outage_midway)
    thread.start()
    lines: list[str] = []
    try:
        copying.set()
        stats = copy_blobs(src, "in", dst, "out", directory=True, overwrite=False, concurrency=4, report=lines.append)
    finally:
        copying.clear()
        thread.join()
        if not server.running:
            server.start()

    assert "error" not in outage, outage.get("error")
    assert outage["during_copy"], "the copy ended before the outage: nothing was tested"
    assert read_blobs(dst, "out/") == files
    assert (stats.files, stats.skipped) == (400, 0)
    assert lines[-1].startswith("copied 400/400 files, ")


@ACCOUNTS
def test_a_copy_whose_answer_was_lost_is_not_taken_for_someone_elses_blob(make_store, dst_account) -> None:
    src, dst = make_store(), make_store(dst_account, retry_total=0)
    put(src, TREE, "in/")
    lost: list[str] = []

    def lose_the_first_commit_answer(response) -> None:
        # The commit (or Copy Blob) went through, but the connection broke before its answer arrived.
        http = response.http_request
        creates = "comp=blocklist" in http.url or "x-ms-copy-source" in http.headers
        if http.method == "PUT" and creates and not lost:
            lost.append(http.url)
            raise ServiceResponseError("Connection reset by peer (simulated)")

    dst._client_options["raw_response_hook"] = lose_the_first_commit_answer

    stats = copy_blobs(src, "in/a.csv", dst, "out/a.csv", directory=False, overwrite=False)

    assert lost, "the hook never ran: nothing was tested"
    assert (stats.files, stats.skipped) == (1, 0)
    assert read_blobs(dst) == {"out/a.csv": TREE["a.csv"]}


def test_sas_source_needs_read_permission_and_says_so_without_secrets(azurite_two_accounts, make_store) -> None:
    server = azurite_two_accounts
    # Azurite checks a copy source's SAS only when it is in another account (Azure always does).
    keyed, dst = make_store(), make_store(SECOND_ACCOUNT_NAME)
    put(keyed, TREE, "in/")
    # A SAS that may list but not read: the destination's service is refused the source.
    sas = generate_container_sas(
        ACCOUNT_NAME,
        keyed.container_name,
        account_key=server.accounts[ACCOUNT_NAME],
        permission=ContainerSasPermissions(list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    settings = {
        "container_name": keyed.container_name,
        "account_url": server.account_url_of(ACCOUNT_NAME),
        "credential": "sas_token",
    }
    src = BlobBackend("listonly", settings, sas, retry_backoff=0.05)

    with pytest.raises(DatastoreError, match=r"could not read the source .*'r' permission") as info:
        copy_blobs(src, "in", dst, "out", directory=True, overwrite=False)

    signature = re.search(r"sig=([^&]+)", sas).group(1)  # type: ignore[union-attr]
    assert signature not in str(info.value) and server.accounts[ACCOUNT_NAME] not in str(info.value)
    assert read_blobs(dst) == {}

    # With read permission the datastore's own SAS is what the destination's service reads through.
    readable = generate_container_sas(
        ACCOUNT_NAME,
        keyed.container_name,
        account_key=server.accounts[ACCOUNT_NAME],
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    src = BlobBackend("readable", settings, readable, retry_backoff=0.05)
    assert copy_blobs(src, "in", dst, "out", directory=True, overwrite=False).files == len(TREE)
    assert read_blobs(dst, "out/") == TREE


def test_refused_copies_say_why(make_store) -> None:
    src, dst = make_store(), make_store()
    put(src, TREE, "in/")
    with pytest.raises(DatastoreError, match="onto itself"):
        copy_blobs(src, "in", src, "in", directory=True, overwrite=True)
    with pytest.raises(DatastoreError, match="it is a folder: copy it with directory=True"):
        copy_blobs(src, "in", dst, "out", directory=False, overwrite=False)
    with pytest.raises(DatastoreError, match="it is a file: copy it with directory=False"):
        copy_blobs(src, "in/a.csv", dst, "out", directory=True, overwrite=False)
    with pytest.raises(DatastoreError, match=r"No data at .*'missing'"):
        copy_blobs(src, "missing", dst, "out", directory=True, overwrite=False)
    assert read_blobs(dst) == {}


# -- through the worker ---------------------------------------------------------------------------
def test_blob_to_local_directory_copy(make_store, tmp_path: Path) -> None:
    src = make_store()
    put(src, TREE, "in/")
    local = LocalBackend("local_ds", tmp_path / "root")
    make_tree(tmp_path / "root" / "out", {"a.csv": b"old"})

    stats = copy_files(src, "in", local, "out", directory=True, overwrite=False)

    assert read_tree(tmp_path / "root" / "out") == {**TREE, "a.csv": b"old"}
    assert (stats.files, stats.skipped, stats.server_side) == (len(TREE) - 1, 1, False)
    assert read_tree(tmp_path / "root").keys() == {f"out/{rel}" for rel in TREE}  # no staging left behind


def test_blob_to_local_copy_of_a_corrupt_source_writes_nothing(make_store, tmp_path: Path) -> None:
    src = make_store()
    put(src, TREE, "in/")
    wrong = spoil_md5(src, "in/sub/deeper/c.bin")
    local = LocalBackend("local_ds", tmp_path / "root")

    with pytest.raises(DatastoreError, match="failed verification") as info:
        copy_files(src, "in", local, "out", directory=True, overwrite=False)

    assert "in/sub/deeper/c.bin" in str(info.value) and wrong in str(info.value)
    assert hashlib.md5(TREE["sub/deeper/c.bin"]).hexdigest() in str(info.value)
    assert read_tree(tmp_path / "root") == {}


def test_local_to_blob_directory_copy_sets_content_md5(make_store, tmp_path: Path) -> None:
    # Small single-put and block sizes: the 3 MiB file goes up in blocks, which get no Content-MD5 from the service.
    dst = make_store(max_single_put_size=MiB, max_block_size=MiB)
    files = {**TREE, "big.bin": os.urandom(3 * MiB)}
    local = LocalBackend("local_ds", make_tree(tmp_path / "root" / "in", files).parent)

    stats = copy_files(local, "in", dst, "out", directory=True, overwrite=True)

    assert read_blobs(dst, "out/") == files
    for rel, data in files.items():
        assert md5_property(dst, f"out/{rel}") == hashlib.md5(data).hexdigest()
    assert (stats.files, stats.bytes, stats.server_side) == (len(files), sum(map(len, files.values())), False)


def test_an_upload_the_service_received_differently_is_deleted(make_store, tmp_path: Path) -> None:
    dst = make_store()
    files = {"a.bin": os.urandom(5000), "b.bin": os.urandom(6000)}
    local = LocalBackend("local_ds", make_tree(tmp_path / "root" / "in", files).parent)

    def damage_b(request) -> None:
        # Stands in for bytes damaged on the way: same length, one byte different.
        http = request.http_request
        if http.method == "PUT" and http.url.split("?")[0].endswith("/out/b.bin"):
            http.data = bytes([http.data[0] ^ 1]) + http.data[1:]

    dst._client_options["raw_request_hook"] = damage_b

    with pytest.raises(DatastoreError, match="failed verification") as info:
        copy_files(local, "in", dst, "out", directory=True, overwrite=False)

    damaged = bytes([files["b.bin"][0] ^ 1]) + files["b.bin"][1:]
    assert hashlib.md5(damaged).hexdigest() in str(info.value)
    assert hashlib.md5(files["b.bin"]).hexdigest() in str(info.value)
    assert read_blobs(dst) == {}  # the damaged blob and the good one this copy made are gone


def test_local_to_local_copy_and_blob_to_blob_dispatch(make_store, tmp_path: Path) -> None:
    one = LocalBackend("one", make_tree(tmp_path / "one" / "in", TREE).parent)
    two = LocalBackend("two", tmp_path / "two")
    stats = copy_files(one, "in/sub/b.csv", two, "b-copy.csv", directory=False, overwrite=False)
    assert read_tree(tmp_path / "two") == {"b-copy.csv": TREE["sub/b.csv"]}
    assert stats.files == 1 and not stats.server_side

    src, dst = make_store(), make_store(SECOND_ACCOUNT_NAME)
    put(src, TREE, "in/")
    assert copy_files(src, "in", dst, "", directory=True, overwrite=False).server_side
    assert read_blobs(dst) == TREE
