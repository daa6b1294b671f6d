"""Verified copies between datastores (SDK v1's ``DataTransferStep``): server-side for blob to blob."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import math
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from aml_airflow_provider._names import normalize_datastore_path
from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import DatastoreError, UserErrorException
from aml_airflow_provider.storage.base import DatastoreBackend, RemoteFile, new_temp_name, remove_path
from aml_airflow_provider.storage.blob import BlobBackend, error_detail

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobProperties, UserDelegationKey

log = logging.getLogger(__name__)

MiB = 1024 * 1024
#: Range of the source that one Put Block From URL request copies; blobs up to this size take one request.
DEFAULT_BLOCK_SIZE = 64 * MiB
#: Put Block List accepts at most this many blocks: bigger blobs get bigger blocks.
MAX_BLOCKS = 50_000
#: Largest range Put Block From URL copies in one request.
MAX_BLOCK_SIZE = 4000 * MiB
#: Largest blob Copy Blob From URL copies in one synchronous request (Azure's limit).
SYNC_COPY_LIMIT = 256 * MiB
#: Seconds one blob's requests may keep failing transiently (in all) before its copy gives up.
RETRY_SECONDS = 60.0
_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 4.0
#: Lifetime of the read SAS with which the destination's service fetches a source range; made per request.
SAS_LIFETIME = timedelta(hours=1)
#: Seconds between progress lines.
REPORT_INTERVAL = 5.0
_STAGING_PREFIX = ".aml-copy-"
_MD5_IN_ERROR = re.compile(r"(?i)servercalculatedmd5\s*[:>]\s*([A-Za-z0-9+/=]+)")

_T = TypeVar("_T")


@dataclass(frozen=True)
class CopyStats:
    """What a copy did.

    :param files: files copied
    :param bytes: bytes copied (skipped files are not counted)
    :param seconds: how long the copy took
    :param skipped: files not copied because they existed at the destination and ``overwrite`` was off
    :param server_side: True when the storage service moved the bytes (blob to blob), False when they
        went through this worker
    """

    files: int
    bytes: int
    seconds: float
    skipped: int
    server_side: bool

    @property
    def bytes_per_second(self) -> float:
        """Average throughput of the copied files (0 for an instant copy)."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


# -- public entry points --------------------------------------------------------------------------
def copy_blobs(
    src: BlobBackend,
    src_path: str,
    dst: BlobBackend,
    dst_path: str,
    *,
    directory: bool,
    overwrite: bool,
    report: Callable[[str], None] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    concurrency: int | None = None,
) -> CopyStats:
    """Copy a blob, or every blob under a folder, to another (or the same) blob datastore, server-side.

    The bytes never pass through this worker. The destination's storage service reads the source
    through a URL carrying a read-only SAS valid for :data:`SAS_LIFETIME` (made once per copy from
    the source's account key, or from a user delegation key for ``default_azure_credential``; a SAS
    datastore's own token otherwise). Every request reads the source on condition that its ETag is
    unchanged, so a source rewritten during the copy fails it instead of mixing two versions.

    - **Within one storage account**, a blob of up to :data:`SYNC_COPY_LIMIT` bytes takes one
      synchronous Copy Blob From URL request, which returns once the blob is complete and carries
      the source's Content-MD5 for the service to check the bytes it read against; a larger blob
      takes a Copy Blob (which Azure usually completes at once within an account), waited for and
      then compared with the source (size, Content-MD5). Content settings and metadata are copied
      by the service. A source without a Content-MD5 is copied as across accounts, so that it
      gets one.
    - **Across accounts**, where the bytes move between services, a blob is staged with Put Block
      From URL, ``block_size`` bytes per request (ranges in parallel, the destination datastore's
      ``chunk_concurrency`` at a time), and committed with Put Block List, with the source's
      content settings, metadata and Content-MD5 (or, for a one-block copy of a source without
      one, the MD5 the service computed). A one-block copy sends the source's Content-MD5 for the
      service to check; a multi-block copy is read back and compared (size and Content-MD5: the
      service does not hash a block list).

    Either way a blob appears complete or not at all, but for a Copy Blob of more than
    :data:`SYNC_COPY_LIMIT` bytes that Azure leaves pending: it is visible, with copy status
    ``pending``, until it completes. A failed verification deletes the bad blob and raises
    :class:`DatastoreError` naming the blob and both values.

    Requests failing transiently (connection refused or reset, timeouts, 408, 429, 5xx) are
    retried with exponential back-off, on top of the client's own retries, for up to
    :data:`RETRY_SECONDS` per blob; a request whose answer was lost is recognised when retried.
    Any other failure stops the copy, and the blobs this call created are deleted; pre-existing
    blobs it already replaced (``overwrite=True``) keep their new, verified content.

    :param src: the source datastore
    :param src_path: the blob (``directory=False``) or folder (``directory=True``; '' for the whole
        container) to copy
    :param dst: the destination datastore
    :param dst_path: the destination blob name, or the folder to copy into (relative paths kept)
    :param directory: copy every blob under ``src_path`` instead of the one blob ``src_path``
    :param overwrite: replace destination blobs that exist; if False they are kept and counted in
        ``skipped`` (a blob appearing during the copy is kept too)
    :param report: called with a progress line every :data:`REPORT_INTERVAL` seconds and at the end
    :param block_size: bytes per Put Block From URL request (copies across accounts)
    :param concurrency: blobs copied at once (default: the destination datastore's ``file_concurrency``)
    :returns: what was copied
    :raises DatastoreError: nothing to copy, a copy onto itself, a failed verification, or a
        request that failed for good
    """
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise UserErrorException(f"block_size must be between 1 and {MAX_BLOCK_SIZE} bytes, not {block_size}.")
    concurrency = dst.file_concurrency if concurrency is None else concurrency
    if concurrency < 1:
        raise UserErrorException(f"concurrency must be at least 1, not {concurrency}.")
    started = time.monotonic()
    src_path = normalize_datastore_path(src_path)
    dst_path = normalize_datastore_path(dst_path)
    blobs = _source_blobs(src, src_path, directory)
    pairs = _destinations([b.name for b in blobs], src, src_path, dst, dst_path, directory)
    copier = _BlobCopier(src, dst, overwrite=overwrite, existing=set(), block_size=block_size)
    # Needed to spare the blobs that were there from a clean-up (overwrite) and, across accounts, to not
    # move a blob's bytes only to have its commit refused; within an account a refused Copy Blob is the
    # cheaper check.
    if overwrite or not copier.same_account:
        copier.existing = _existing_blobs(dst, dst_path, directory)
    existing = copier.existing
    todo = [(blob, name) for blob, (_, name) in zip(blobs, pairs, strict=True) if overwrite or name not in existing]
    progress = _Progress(len(pairs), report, skipped=len(pairs) - len(todo))
    copier.progress = progress
    log.info(
        "Copying %d blob(s) server-side from %s to %s (%s)",
        len(pairs),
        src.describe(src_path),
        dst.describe(dst_path),
        f"{len(existing)} already there, replacing them"
        if overwrite
        else "keeping any already there"
        if copier.same_account
        else f"{len(existing)} already there, kept",
    )
    with progress:
        try:
            _run_all(lambda job: copier.copy(*job), todo, concurrency, copier.stop)
        except BaseException:
            copier.remove_created()
            raise
    stats = CopyStats(progress.files, progress.copied_bytes, time.monotonic() - started, progress.skipped, True)
    _log_done(stats, src, src_path, dst, dst_path)
    return stats


def copy_files(
    src: DatastoreBackend,
    src_path: str,
    dst: DatastoreBackend,
    dst_path: str,
    *,
    directory: bool,
    overwrite: bool,
    report: Callable[[str], None] | None = None,
) -> CopyStats:
    """Copy a file, or every file under a folder, between any two datastores, verifying every file.

    Blob to blob goes to :func:`copy_blobs` (server-side). Otherwise each file goes through this
    worker with the backends' own transfers (large blobs move in parallel chunks): a blob source
    is downloaded into a staging folder (the destination's :meth:`~DatastoreBackend.staging_dir`
    when it has one, else a temp folder) and checked against its size and Content-MD5; a local
    source is read in place. The file is then written (temp file and rename for a local folder, a
    single Put Blob or a block commit for a blob, so never partial) and verified by size and MD5:
    a file of up to the blob datastore's ``max_single_put_size`` goes up in one request, and the
    MD5 the service computed of what arrived must equal that of the bytes sent; a larger file goes
    up in parallel blocks and gets the MD5 computed here (while it goes up) as its Content-MD5, so
    later copies can verify it; a folder destination is read back. A mismatch deletes the bad file
    and raises :class:`DatastoreError` with both values; on any failure the files this call
    created are deleted.

    :param src: the source datastore
    :param src_path: the file (``directory=False``) or folder (``directory=True``) to copy
    :param dst: the destination datastore
    :param dst_path: the destination file, or the folder to copy into (relative paths kept)
    :param directory: copy every file under ``src_path`` instead of the one file ``src_path``
    :param overwrite: replace destination files that exist; if False they are kept and counted in ``skipped``
    :param report: called with a progress line every :data:`REPORT_INTERVAL` seconds and at the end
    :returns: what was copied
    """
    if isinstance(src, BlobBackend) and isinstance(dst, BlobBackend):
        return copy_blobs(src, src_path, dst, dst_path, directory=directory, overwrite=overwrite, report=report)
    started = time.monotonic()
    src_path = normalize_datastore_path(src_path)
    dst_path = normalize_datastore_path(dst_path)
    files = _source_files(src, src_path, directory)
    pairs = _destinations([f.path for f in files], src, src_path, dst, dst_path, directory)
    present = {f.path for f in dst.list_files(dst_path)}
    existing = {name for _, name in pairs if name in present}
    todo = [(f, name) for f, (_, name) in zip(files, pairs, strict=True) if overwrite or name not in existing]
    progress = _Progress(len(pairs), report, skipped=len(pairs) - len(todo))
    needs_staging = any(src.local_path(f.path) is None for f, _ in todo)
    staging = (dst.staging_dir() or Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX))) if needs_staging else None
    copier = _FileCopier(src, dst, overwrite=overwrite, existing=existing, staging=staging, progress=progress)
    try:
        with progress:
            try:
                _run_all(lambda job: copier.copy(*job), todo, dst.file_concurrency, copier.stop)
            except BaseException:
                copier.remove_created()
                raise
    finally:
        if staging is not None:
            remove_path(staging)
    stats = CopyStats(progress.files, progress.copied_bytes, time.monotonic() - started, progress.skipped, False)
    _log_done(stats, src, src_path, dst, dst_path)
    return stats


# -- planning -------------------------------------------------------------------------------------
def _destinations(
    names: Sequence[str],
    src: DatastoreBackend,
    src_path: str,
    dst: DatastoreBackend,
    dst_path: str,
    directory: bool,
) -> list[tuple[str, str]]:
    """``(source name, destination name)`` for every source file; refuse a copy of a file onto itself."""
    if directory:
        cut = len(src_path) + 1 if src_path else 0
        pairs = [(name, f"{dst_path}/{name[cut:]}" if dst_path else name[cut:]) for name in names]
    else:
        if not dst_path:
            raise DatastoreError(f"Refusing to copy a file onto the root of datastore '{dst.name}'; give a file path.")
        pairs = [(name, dst_path) for name in names]
    # browse_url names the physical location (account, container, path or folder) without credentials.
    if pairs and src.browse_url(pairs[0][0]) == dst.browse_url(pairs[0][1]):
        raise DatastoreError(f"Refusing to copy {src.describe(src_path)} onto itself.")
    return pairs


def _no_data(backend: DatastoreBackend, path: str, directory: bool, other_kind_exists: bool) -> DatastoreError:
    if other_kind_exists:
        fix = (
            "it is a file: copy it with directory=False" if directory else "it is a folder: copy it with directory=True"
        )
        return DatastoreError(f"Cannot copy {backend.describe(path)}: {fix}.")
    return DatastoreError(f"No data at {backend.describe(path)}: nothing to copy.")


def _source_files(src: DatastoreBackend, src_path: str, directory: bool) -> list[RemoteFile]:
    files = src.list_files(src_path)
    if directory:
        prefix = f"{src_path}/" if src_path else ""
        # A blob named exactly like the folder (possible on flat namespaces) has no place in the copy.
        members = [f for f in files if f.path.startswith(prefix) and f.path != src_path]
        if not members:
            raise _no_data(src, src_path, directory, bool(files))
        return members
    if not src_path:
        raise DatastoreError(f"Give the file to copy from datastore '{src.name}', or copy with directory=True.")
    match = [f for f in files if f.path == src_path]
    if not match:
        raise _no_data(src, src_path, directory, bool(files))
    return match


def _source_blobs(src: BlobBackend, src_path: str, directory: bool) -> list[BlobProperties]:
    """The source blobs with the properties a copy keeps (content settings, metadata, ETag)."""
    from azure.core.exceptions import AzureError, ResourceNotFoundError

    retry = _Retry(f"listing {src.describe(src_path)}", threading.Event())
    client = src.container_client
    try:
        if not directory:
            if not src_path:
                raise DatastoreError(f"Give the blob to copy from datastore '{src.name}', or copy with directory=True.")
            try:
                return [retry.call(client.get_blob_client(src_path).get_blob_properties)]
            except ResourceNotFoundError:
                is_folder = retry.call(_any_blob_under, src, f"{src_path}/")
                raise _no_data(src, src_path, directory, is_folder) from None
        prefix = f"{src_path}/" if src_path else ""
        blobs = retry.call(
            lambda: [
                b
                for b in client.list_blobs(name_starts_with=prefix or None, include=["metadata"])
                # Folder placeholders of hierarchical-namespace accounts hold no data.
                if (b.metadata or {}).get("hdi_isfolder") != "true"
            ]
        )
        if not blobs:
            raise _no_data(src, src_path, directory, bool(src_path) and retry.call(src.exists, src_path))
    except (AzureError, ValueError) as exc:
        raise src._error(exc, "list", src_path) from None
    blobs.sort(key=lambda b: b.name)
    return blobs


def _any_blob_under(backend: BlobBackend, prefix: str) -> bool:
    pages = backend.container_client.list_blobs(name_starts_with=prefix, results_per_page=1).by_page()
    return any(True for _ in next(pages, []))


def _existing_blobs(dst: BlobBackend, dst_path: str, directory: bool) -> set[str]:
    from azure.core.exceptions import AzureError

    if not directory:
        try:
            exists = _Retry(f"checking {dst.describe(dst_path)}", threading.Event()).call(dst.exists, dst_path)
        except (AzureError, ValueError) as exc:
            raise dst._error(exc, "read", dst_path) from None
        return {dst_path} if exists else set()
    return {f.path for f in dst.list_files(dst_path)}


# -- blob to blob ---------------------------------------------------------------------------------
class _Cancelled(Exception):
    """Another file's copy failed: this one stops before its next request."""


class _BlocksLost(Exception):
    """Put Block List found staged blocks missing (the blob was rewritten, or the service restarted)."""


class _SourceReader:
    """Makes URLs through which the destination's storage service can read source blobs.

    :param src: the source datastore
    """

    def __init__(self, src: BlobBackend) -> None:
        self.src = src
        client = src.container_client
        self._credential = client.credential
        self._lock = threading.Lock()
        self._delegation_key: UserDelegationKey | None = None
        self._delegation_expiry = datetime.min.replace(tzinfo=UTC)
        self._sas: str | None = None
        self._sas_expiry = datetime.min.replace(tzinfo=UTC)
        url = urlsplit(client.url)
        # Built by hand per blob: a BlobClient per URL costs more than the request it is for.
        self._container_url = url._replace(query="", fragment="").geturl().rstrip("/")
        self._query = url.query
        if url.query:
            # A SAS datastore: its token is in every URL the client makes, and is what we can give.
            self.mode = "sas"
        elif getattr(self._credential, "account_key", None):
            self.mode = "key"
        elif hasattr(self._credential, "get_token"):
            self.mode = "delegation"
        else:
            raise DatastoreError(
                f"Cannot copy from {src.describe()} server-side: its credential ({src.credential_kind}) cannot "
                "grant the destination's storage service read access. Use an account key, a SAS token with read "
                "permission, or an Azure identity."
            )

    def url(self, name: str) -> str:
        """The URL of the source blob ``name`` with a read-only SAS (or the datastore's own SAS)."""
        blob_url = f"{self._container_url}/{quote(name, safe='~/')}"
        return f"{blob_url}?{self._query if self.mode == 'sas' else self._read_sas()}"

    def _read_sas(self) -> str:
        """A read-only SAS on the source container, made once per copy (and again when half its life is over)."""
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        with self._lock:
            now = datetime.now(UTC)
            if self._sas is None or self._sas_expiry - now < SAS_LIFETIME / 2:
                expiry = now + SAS_LIFETIME
                common: dict[str, Any] = {
                    "container_name": self.src.container_name,
                    "permission": ContainerSasPermissions(read=True),
                    "expiry": expiry,
                }
                if self.mode == "key":
                    key = self._credential.account_key
                    self._sas = generate_container_sas(self._credential.account_name, account_key=key, **common)
                else:
                    delegation = self._user_delegation_key(now)
                    self._sas = generate_container_sas(self.src.account_name, user_delegation_key=delegation, **common)
                self._sas_expiry = expiry
            return self._sas

    def _user_delegation_key(self, now: datetime) -> UserDelegationKey:
        """The user delegation key to sign with (called with the lock held)."""
        from azure.core.exceptions import AzureError
        from azure.storage.blob import BlobServiceClient

        # Renewed while a SAS made from it would still outlive it.
        if self._delegation_key is None or self._delegation_expiry - now < SAS_LIFETIME * 2:
            expiry = now + SAS_LIFETIME * 4
            service = BlobServiceClient(self.src.account_url, credential=self._credential)
            try:
                self._delegation_key = service.get_user_delegation_key(now - timedelta(minutes=5), expiry)
            except AzureError as exc:
                detail = redact(error_detail(exc))
                raise DatastoreError(
                    f"Cannot copy from {self.src.describe()} server-side: it authenticates with the worker's "
                    "Azure identity, so the destination's storage service can read it only through a user "
                    f"delegation SAS, and getting a user delegation key failed ({type(exc).__name__}: {detail}). "
                    "Give the identity the 'Storage Blob Delegator' and 'Storage Blob Data Reader' roles on the "
                    "source account, or register the source datastore with an account key or a SAS token."
                ) from None
            self._delegation_expiry = expiry
        return self._delegation_key


class _BlobCopier:
    """Copies single blobs server-side (see :func:`copy_blobs`); shared by the worker threads.

    :param src: the source datastore
    :param dst: the destination datastore
    :param overwrite: replace existing destination blobs
    :param existing: destination names that existed before the copy (never deleted on failure)
    :param block_size: bytes per Put Block From URL request
    """

    def __init__(
        self, src: BlobBackend, dst: BlobBackend, *, overwrite: bool, existing: set[str], block_size: int
    ) -> None:
        self.src, self.dst = src, dst
        self.overwrite = overwrite
        self.existing = existing
        self.block_size = block_size
        self.reader = _SourceReader(src)
        self.stop = threading.Event()
        self.progress: _Progress | None = None
        self._created: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._secrets = [src._secret, dst._secret]
        # Copy Blob needs no bytes moved through a second request path within one account.
        self.same_account = src.account_url.lower() == dst.account_url.lower()

    def copy(self, blob: BlobProperties, name: str) -> None:
        """Copy ``blob`` to the destination blob ``name``, verify it, and count it."""
        from azure.core.exceptions import AzureError

        assert self.progress is not None
        retry = _Retry(f"copy of '{blob.name}' to '{name}'", self.stop, self._secrets)
        client = self.dst.container_client.get_blob_client(name)
        try:
            if self.same_account and (blob.size > SYNC_COPY_LIMIT or _md5_of(blob)):
                done = self._copy_in_account(client, blob, name, retry)
            else:
                done = self._copy_in_blocks(client, blob, name, retry)
        except AzureError as exc:
            raise self._error(exc, blob, name) from None
        if done:
            self.progress.file_done(blob.size)
        else:  # created by someone else since we listed the destination
            self.progress.file_skipped()

    def _copy_in_account(self, client: BlobClient, blob: BlobProperties, name: str, retry: _Retry) -> bool:
        """Copy within one storage account with Copy Blob; False if the destination appeared meanwhile.

        Up to :data:`SYNC_COPY_LIMIT` bytes, Copy Blob From URL: one request that returns when the
        blob is complete, and that carries the source's Content-MD5 for the service to check the
        bytes it read against. Larger blobs take an asynchronous Copy Blob (within an account
        Azure usually completes it at once), waited for, then checked for size and Content-MD5.
        """
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceExistsError, ResourceModifiedError

        assert self.progress is not None
        sync = blob.size <= SYNC_COPY_LIMIT
        source_md5 = _md5_of(blob)
        headers = {"x-ms-source-content-md5": base64.b64encode(source_md5).decode()} if sync and source_md5 else {}
        # If-None-Match: * makes "don't overwrite" hold even against a writer racing us.
        conditions: dict[str, Any] = {} if self.overwrite else {"match_condition": MatchConditions.IfMissing}
        attempts = 0

        def start() -> dict[str, Any] | None:
            nonlocal attempts
            attempts += 1
            if self.stop.is_set():
                raise _Cancelled()
            try:
                return client.start_copy_from_url(
                    self.reader.url(blob.name),
                    requires_sync=sync,
                    # A source rewritten since it was listed fails the copy instead of mixing versions.
                    source_etag=blob.etag,
                    source_match_condition=MatchConditions.IfNotModified,
                    headers=headers,
                    **conditions,
                )
            except (ResourceExistsError, ResourceModifiedError):
                # A copy whose answer was lost to a transient failure may have gone through.
                ours = self._copied_here(client, blob) if attempts > 1 else None
                if ours is not None:
                    return {"etag": ours.etag, "copy_status": "success"}
                raise

        try:
            result = retry.call(start)
        except (ResourceExistsError, ResourceModifiedError):
            return False
        assert result is not None
        props = None
        if result.get("copy_status") != "success":
            props = self._await_copy(client, blob, name, str(result.get("copy_id")), retry)
            result = {"etag": props.etag}
        if client.blob_name not in self.existing:
            with self._lock:
                self._created.append((client.blob_name, str(result["etag"])))
        if props is not None:
            # A copy the service finished later: compare what it made with the source.
            self._verify(client, blob, name, None, retry, props)
        # Otherwise the service answered with a finished copy of the source version listed (its ETag was
        # a condition), and where it read the bytes it checked them against the source's Content-MD5.
        self.progress.add_bytes(blob.size)
        return True

    def _copied_here(self, client: BlobClient, blob: BlobProperties) -> BlobProperties | None:
        """The destination's properties if it is a finished copy of ``blob``'s URL (ours, its answer lost)."""
        props = client.get_blob_properties()
        source = urlsplit(props.copy.source or "")._replace(query="").geturl()
        ours = props.copy.status == "success" and source == self.reader.url(blob.name).split("?", 1)[0]
        return props if ours else None

    def _await_copy(
        self, client: BlobClient, blob: BlobProperties, name: str, copy_id: str, retry: _Retry
    ) -> BlobProperties:
        """Wait for a pending Copy Blob; abort and delete it if the copy is stopped, fails or is aborted."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        delay = _FIRST_BACKOFF
        while True:
            if self.stop.wait(delay):
                with contextlib.suppress(AzureError):  # it may have finished meanwhile: delete it anyway
                    client.abort_copy(copy_id)
                with contextlib.suppress(AzureError):
                    client.delete_blob()
                raise _Cancelled()
            delay = min(delay * 2, _MAX_BACKOFF)
            props = retry.call(client.get_blob_properties)
            if props.copy.status == "success":
                return props
            if props.copy.status != "pending":
                with contextlib.suppress(AzureError):
                    client.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
                raise DatastoreError(
                    f"Copy of {self._where(blob.name, name)} ended {props.copy.status}: "
                    f"{redact(props.copy.status_description or 'no reason given', self._secrets)}; the destination "
                    "blob was deleted."
                )

    def _copy_in_blocks(self, client: BlobClient, blob: BlobProperties, name: str, retry: _Retry) -> bool:
        """Copy with Put Block From URL and Put Block List; False if the destination appeared meanwhile."""
        assert self.progress is not None
        for attempt in (1, 2):
            staged = 0
            try:
                block_ids, service_md5, staged = self._stage(client, blob, name, retry)
                etag = self._commit(client, blob, block_ids, service_md5, retry)
            except _BlocksLost:
                self.progress.add_bytes(-staged)
                if attempt == 2:
                    raise DatastoreError(
                        f"Cannot copy {self._where(blob.name, name)}: the staged blocks vanished twice before "
                        "they could be committed (is another writer replacing the destination blob?)."
                    ) from None
                continue
            break
        if etag is None:
            self.progress.add_bytes(-staged)
            return False
        source_md5 = _md5_of(blob)
        # A one-block copy whose MD5 the service checked against the source's needs no second look.
        if not (source_md5 and service_md5 == source_md5):
            self._verify(client, blob, name, service_md5, retry)
        return True

    def _stage(
        self, client: BlobClient, blob: BlobProperties, name: str, retry: _Retry
    ) -> tuple[list[str], bytes | None, int]:
        """Stage the source's ranges as uncommitted blocks; return their ids, the service's MD5 of a
        one-block copy, and the bytes staged."""
        from azure.storage.blob._generated.models import SourceModifiedAccessConditions

        assert self.progress is not None
        size = blob.size
        if size == 0:
            return [], None, 0
        block = max(self.block_size, math.ceil(size / MAX_BLOCKS))
        if block > MAX_BLOCK_SIZE:
            raise DatastoreError(f"Cannot copy {self._where(blob.name, name)}: {size} bytes is more than a blob holds.")
        count = math.ceil(size / block)
        token = uuid.uuid4().hex[:16]  # fresh ids: blocks of an earlier, failed attempt are never committed
        block_ids = [f"{token}{i:06d}" for i in range(count)]
        # The SDK has no public keyword for the source's If-Match on Put Block From URL.
        unchanged = SourceModifiedAccessConditions(source_if_match=blob.etag)
        source_md5 = _md5_of(blob) if count == 1 else None
        failed = threading.Event()
        staged = 0
        lock = threading.Lock()

        def stage(index: int) -> dict[str, Any]:
            nonlocal staged
            if self.stop.is_set() or failed.is_set():
                raise _Cancelled()
            offset = index * block
            length = min(block, size - offset)
            try:
                result = retry.call(
                    lambda: client.stage_block_from_url(
                        block_ids[index],
                        self.reader.url(blob.name),
                        source_offset=offset,
                        source_length=length,
                        # The service hashes what it read and refuses a mismatch: an end-to-end check.
                        source_content_md5=source_md5,
                        source_modified_access_conditions=unchanged,
                    )
                )
            except BaseException:
                failed.set()
                raise
            with lock:
                staged += length
            self.progress.add_bytes(length)  # type: ignore[union-attr]
            return result

        try:
            if count == 1:
                result = stage(0)
                md5 = result.get("content_md5")
                return block_ids, bytes(md5) if md5 else None, staged
            with ThreadPoolExecutor(max_workers=min(self.dst.chunk_concurrency, count)) as pool:
                list(pool.map(stage, range(count)))
        except BaseException:
            self.progress.add_bytes(-staged)
            raise
        return block_ids, None, staged

    def _commit(
        self, client: BlobClient, blob: BlobProperties, block_ids: list[str], service_md5: bytes | None, retry: _Retry
    ) -> str | None:
        """Commit the staged blocks with the source's properties; return the ETag, or None if the blob
        appeared meanwhile and ``overwrite`` is off."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError

        source = blob.content_settings
        # Later copies and downloads verify against the MD5; block-list blobs get none from the service.
        settings = _settings_with_md5(source, _md5_of(blob) or service_md5)
        # If-None-Match: * makes "don't overwrite" hold even against a writer racing us.
        conditions: dict[str, Any] = {} if self.overwrite else {"match_condition": MatchConditions.IfMissing}
        attempts = 0

        def commit() -> str | None:
            nonlocal attempts
            attempts += 1
            if self.stop.is_set():
                raise _Cancelled()
            try:
                result = client.commit_block_list(
                    block_ids, content_settings=settings, metadata=dict(blob.metadata or {}) or None, **conditions
                )
            except (ResourceExistsError, ResourceModifiedError):
                # A commit whose answer was lost to a transient failure may have gone through.
                if attempts > 1 and block_ids and _committed_ids(client) == block_ids:
                    return client.get_blob_properties().etag
                raise
            except HttpResponseError as exc:
                if _error_code(exc) == "InvalidBlockList":
                    raise _BlocksLost() from None
                raise
            return result["etag"]

        try:
            etag = retry.call(commit)
        except (ResourceExistsError, ResourceModifiedError):
            return None
        if client.blob_name not in self.existing:
            with self._lock:
                self._created.append((client.blob_name, etag))
        return etag

    def _verify(
        self,
        client: BlobClient,
        blob: BlobProperties,
        name: str,
        service_md5: bytes | None,
        retry: _Retry,
        props: BlobProperties | None = None,
    ) -> None:
        """Compare the new blob (``props``, else read now) with the source; delete it and raise if they differ."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError

        source_md5 = _md5_of(blob)
        props = props or retry.call(client.get_blob_properties)
        got_md5 = props.content_settings.content_md5
        got = bytes(got_md5) if got_md5 else None
        problem = None
        if props.size != blob.size:
            problem = f"the copy has {props.size} bytes, the source {blob.size}"
        elif source_md5 and service_md5 and service_md5 != source_md5:
            problem = f"the source's Content-MD5 is {source_md5.hex()}, the MD5 of the copied data {service_md5.hex()}"
        elif (source_md5 or service_md5) and got != (source_md5 or service_md5):
            expected = (source_md5 or service_md5 or b"").hex()
            problem = f"the copy's Content-MD5 is {got.hex() if got else 'missing'}, the source's {expected}"
        if problem is None:
            return
        try:
            # Only the blob we verified: a newer write by someone else is not ours to delete.
            client.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified)
            outcome = "the bad copy was deleted"
        except AzureError as exc:
            log.error("Could not delete the bad copy %s: %s", self.dst.describe(name), type(exc).__name__)
            outcome = "the bad copy could NOT be deleted; delete it by hand"
        raise DatastoreError(f"Copy of {self._where(blob.name, name)} failed verification: {problem}; {outcome}.")

    def remove_created(self) -> None:
        """Delete the blobs this copy created (after a failure); pre-existing names are never touched."""
        from azure.core import MatchConditions
        from azure.core.exceptions import AzureError, ResourceModifiedError, ResourceNotFoundError

        with self._lock:
            created, self._created = self._created, []
        if not created:
            return
        left: list[str] = []
        fresh = threading.Event()  # self.stop is set by now; clean-up must still retry

        def delete(item: tuple[str, str]) -> None:
            name, etag = item
            client = self.dst.container_client.get_blob_client(name)
            try:
                _Retry(f"deleting '{name}'", fresh, self._secrets).call(
                    client.delete_blob, etag=etag, match_condition=MatchConditions.IfNotModified
                )
            except ResourceNotFoundError:
                return  # already gone (e.g. deleted as a bad copy): the goal is reached
            except ResourceModifiedError:
                log.warning("Not deleting %s: someone rewrote it during the copy", self.dst.describe(name))
            except AzureError as exc:
                log.error("Could not delete %s after the failed copy: %s", self.dst.describe(name), type(exc).__name__)
                with self._lock:
                    left.append(name)

        with ThreadPoolExecutor(max_workers=min(self.dst.file_concurrency, len(created))) as pool:
            list(pool.map(delete, created))
        if left:
            log.error("The failed copy left %d blob(s) in %s: %s", len(left), self.dst.describe(), ", ".join(left[:20]))
        else:
            log.info("Deleted the %d blob(s) the failed copy had created in %s", len(created), self.dst.describe())

    def _where(self, src_name: str, dst_name: str) -> str:
        return f"{self.src.describe(src_name)} to {self.dst.describe(dst_name)}"

    def _error(self, exc: BaseException, blob: BlobProperties, name: str) -> DatastoreError:
        """A :class:`DatastoreError` for an SDK error of the copy of ``blob`` to ``name``; no secrets."""
        code = _error_code(exc)
        status = getattr(exc, "status_code", None)
        detail = error_detail(exc)
        where = self._where(blob.name, name)
        if code == "Md5Mismatch":
            source_md5 = (_md5_of(blob) or b"").hex()
            found = _MD5_IN_ERROR.search(str(getattr(exc, "message", None) or exc))
            actual = _b64_hex(found.group(1)) if found else None
            message = (
                f"Copy of {where} failed verification: the source's Content-MD5 is {source_md5}, but the data the "
                f"storage service read from it has MD5 {actual or 'of a different value'}. The source blob is corrupt "
                "or its Content-MD5 property is wrong; nothing was written to the destination."
            )
        elif code == "CannotVerifyCopySource":
            message = (
                f"Cannot copy {where}: the destination's storage service could not read the source ({status}: "
                f"{detail}). The source's credential must allow reading (a SAS token needs the 'r' permission), the "
                "source account's network rules must admit the destination's service, and on Azurite both accounts "
                "must be served by the same Azurite instance."
            )
        elif code == "SourceConditionNotMet":
            message = f"Cannot copy {where}: the source blob changed while it was being copied; run the copy again."
        else:
            return DatastoreError(
                redact(self.dst._error(exc, f"copy {self.src.describe(blob.name)} to", name), self._secrets)
            )
        return DatastoreError(redact(message, self._secrets))


def _committed_ids(client: BlobClient) -> list[str]:
    committed, _ = client.get_block_list("committed")
    return [block.id for block in committed]


def _settings_with_md5(settings: Any, md5: bytes | bytearray | None) -> Any:
    """A blob's content settings with another Content-MD5 (Set Blob Properties and commits replace them all)."""
    from azure.storage.blob import ContentSettings

    return ContentSettings(
        content_type=settings.content_type,
        content_encoding=settings.content_encoding,
        content_language=settings.content_language,
        content_disposition=settings.content_disposition,
        cache_control=settings.cache_control,
        content_md5=md5,
    )


def _md5_of(blob: BlobProperties) -> bytes | None:
    md5 = blob.content_settings.content_md5 if blob.content_settings else None
    return bytes(md5) if md5 else None


# -- through the worker (any other pair) ----------------------------------------------------------
class _FileCopier:
    """Copies single files through this worker (see :func:`copy_files`); shared by the worker threads.

    :param src: the source datastore
    :param dst: the destination datastore
    :param overwrite: replace existing destination files
    :param existing: destination names that existed before the copy (never deleted on failure)
    :param staging: folder for downloaded source files (None when every source is a local file)
    :param progress: the copy's counters
    """

    def __init__(
        self,
        src: DatastoreBackend,
        dst: DatastoreBackend,
        *,
        overwrite: bool,
        existing: set[str],
        staging: Path | None,
        progress: _Progress,
    ) -> None:
        self.src, self.dst = src, dst
        self.overwrite = overwrite
        self.existing = existing
        self.staging = staging
        self.progress = progress
        self.stop = threading.Event()
        self._created: list[str] = []
        self._lock = threading.Lock()

    def copy(self, file: RemoteFile, name: str) -> None:
        """Copy ``file`` to ``name`` on the destination, verify it, and count it."""
        if self.stop.is_set():
            raise _Cancelled()
        local = self.src.local_path(file.path)
        staged: Path | None = None
        if local is None:
            assert self.staging is not None
            staged = local = self.staging / new_temp_name(_STAGING_PREFIX)
        try:
            digest: tuple[int, bytes] | None = None
            if staged is not None:
                self.src.download_file(file.path, staged)
                # Checked before anything is written: a bad download must not reach the destination.
                digest = _file_digest(local)
                self._check_source(file, *digest, written=False)
            if self.stop.is_set():
                raise _Cancelled()
            if isinstance(self.dst, BlobBackend):
                stored = self._put_blob(file, local, name, digest)
            else:
                stored = self._put_file(file, local, name, digest)
            if stored is None:
                self.progress.file_skipped()  # appeared since we listed the destination
                return
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        self.progress.add_bytes(stored)
        self.progress.file_done(stored)

    def _put_blob(self, file: RemoteFile, local: Path, name: str, digest: tuple[int, bytes] | None) -> int | None:
        """Upload to a blob datastore and verify: the size, and the MD5 the service computed of what
        arrived (one request), or for a block upload the MD5 computed here, stored as Content-MD5."""
        assert isinstance(self.dst, BlobBackend)
        checked = digest is not None  # a downloaded source was checked before anything was written
        hashing: Future[tuple[int, bytes]] | None = None
        if digest is None and file.size > self.dst._single_put_limit:
            # A large local file is hashed while it goes up, on another core, instead of before.
            hasher = ThreadPoolExecutor(1, thread_name_prefix="aml-md5")
            hashing = hasher.submit(_file_digest, local)
            hasher.shutdown(wait=False)
        uploaded = self.dst.put_file(local, name, overwrite=self.overwrite, content_md5=digest and digest[1])
        if hashing is not None:  # (after a failed upload, the hash ends on its own)
            digest = hashing.result()
        if uploaded is None:
            return None
        if name not in self.existing:
            with self._lock:
                self._created.append(name)
        if digest is None:  # one request: the bytes sent were hashed on the way
            assert uploaded.sent_md5 is not None
            digest = (uploaded.size, uploaded.sent_md5)
        if not checked:
            self._check_source(file, *digest, written=True, name=name)
        size, md5 = digest
        if uploaded.service_md5 is not None:
            got = uploaded.service_md5
        elif uploaded.sent_md5 == md5:
            got = md5  # committed with it: the service does not hash a block list
        else:
            got = _store_md5(self.dst, name, uploaded.etag, md5)
        self._compare(file, name, (uploaded.size, got), (size, md5))
        return size

    def _put_file(self, file: RemoteFile, local: Path, name: str, digest: tuple[int, bytes] | None) -> int | None:
        """Write to a folder (or any other) datastore, then read back what was written and verify it."""
        if digest is None:
            digest = _file_digest(local)
            self._check_source(file, *digest, written=False)
        if not self.dst.upload_file(local, name, overwrite=self.overwrite):
            return None
        if name not in self.existing:
            with self._lock:
                self._created.append(name)
        dst_local = self.dst.local_path(name)
        if dst_local is not None:
            got = _file_digest(dst_local)
        else:
            listed = [f for f in self.dst.list_files(name) if f.path == name]
            size = listed[0].size if listed else -1
            got = (size, bytes.fromhex(listed[0].content_md5) if listed and listed[0].content_md5 else digest[1])
        self._compare(file, name, got, digest)
        return digest[0]

    def _check_source(self, file: RemoteFile, size: int, md5: bytes, *, written: bool, name: str = "") -> None:
        """Raise unless the data read has the size (and MD5, where known) the source listed."""
        if size == file.size and not (file.content_md5 and file.content_md5 != md5.hex()):
            return
        if written:
            _delete_file(self.dst, name)
        got = f"{size} bytes, MD5 {md5.hex()}"
        want = f"{file.size} bytes, MD5 {file.content_md5 or 'unknown'}"
        outcome = "the copy was deleted" if written else "nothing was written"
        raise DatastoreError(
            f"Copy of {self.src.describe(file.path)} failed verification ({outcome}): the data read has {got}, "
            f"the source says {want}. The source is corrupt, its Content-MD5 is wrong, or it changed during the copy."
        )

    def _compare(self, file: RemoteFile, name: str, got: tuple[int, bytes], want: tuple[int, bytes]) -> None:
        """Delete the written file and raise unless it has the size and MD5 of what was read."""
        if got == want:
            return
        _delete_file(self.dst, name)
        raise DatastoreError(
            f"Copy of {self.src.describe(file.path)} to {self.dst.describe(name)} failed verification: the copy "
            f"has {got[0]} bytes and MD5 {got[1].hex()}, the source {want[0]} bytes and MD5 {want[1].hex()}; "
            "the bad copy was deleted."
        )

    def remove_created(self) -> None:
        """Delete the files this copy created (after a failure); pre-existing names are never touched."""
        with self._lock:
            created, self._created = self._created, []
        for name in created:
            try:
                _delete_file(self.dst, name)
            except DatastoreError:
                log.exception("Could not delete %s after the failed copy", self.dst.describe(name))
        if created:
            log.info("Deleted the %d file(s) the failed copy had created in %s", len(created), self.dst.describe())


def _store_md5(dst: BlobBackend, name: str, etag: str, md5: bytes) -> bytes:
    """Give a just-uploaded blob (of ETag ``etag``) the Content-MD5 ``md5``, or return the one it has."""
    from azure.core import MatchConditions
    from azure.core.exceptions import AzureError

    client = dst.container_client.get_blob_client(name)
    try:
        props = client.get_blob_properties(etag=etag, match_condition=MatchConditions.IfNotModified)
        current = props.content_settings
        if current.content_md5:
            return bytes(current.content_md5)
        # Set Blob Properties replaces every content setting, hence the copy of the others.
        client.set_http_headers(
            _settings_with_md5(current, md5), etag=props.etag, match_condition=MatchConditions.IfNotModified
        )
    except (AzureError, ValueError) as exc:
        raise dst._error(exc, "verify", name) from None
    return md5


def _delete_file(backend: DatastoreBackend, name: str) -> None:
    """Delete the one file ``name`` (not what a folder of that name holds)."""
    if isinstance(backend, BlobBackend):
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        try:
            backend.container_client.delete_blob(name)
        except ResourceNotFoundError:
            return  # already gone: the goal is reached
        except AzureError as exc:
            raise backend._error(exc, "delete", name) from None
        return
    if any(f.path == name for f in backend.list_files(name)):
        backend.delete_prefix(name)


def _file_digest(path: Path) -> tuple[int, bytes]:
    """Size and MD5 of a local file, read in 4 MiB pieces."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(4 * MiB):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        raise DatastoreError(f"Cannot read {path} to verify the copy: {exc}") from exc
    return size, digest.digest()


# -- shared machinery -----------------------------------------------------------------------------
class _Progress:
    """Thread-safe counters; a background thread reports every ``interval`` seconds while the copy runs.

    :param total: files in the copy (skipped ones included)
    :param report: the progress callback, or ``None``
    :param skipped: files skipped before the copy started
    :param interval: seconds between lines
    """

    def __init__(
        self, total: int, report: Callable[[str], None] | None, *, skipped: int = 0, interval: float = REPORT_INTERVAL
    ) -> None:
        self.total, self.report, self.interval = total, report, interval
        self.files = 0
        self.skipped = skipped
        self.bytes = 0  # what the service has moved so far, blocks included (for the rate)
        self.copied_bytes = 0  # sizes of the finished files
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = time.monotonic()

    def __enter__(self) -> _Progress:
        self._start = time.monotonic()
        if self.report is not None:
            self._thread = threading.Thread(target=self._run, name="aml-copy-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        if self.report is not None and exc_type is None:
            self._emit(self.line(final=True))

    def add_bytes(self, count: int) -> None:
        with self._lock:
            self.bytes += count

    def file_done(self, size: int) -> None:
        with self._lock:
            self.files += 1
            self.copied_bytes += size

    def file_skipped(self) -> None:
        with self._lock:
            self.skipped += 1

    def line(self, *, final: bool = False) -> str:
        with self._lock:
            files, skipped, moved = self.files, self.skipped, self.bytes
        elapsed = max(time.monotonic() - self._start, 1e-9)
        kept = f" ({skipped} already there, kept)" if skipped else ""
        took = f" in {elapsed:.1f} s" if final else ""
        return (
            f"copied {files + skipped}/{self.total} files{kept}, {_human_size(moved)}{took}, "
            f"{moved / elapsed / 1e6:.1f} MB/s"
        )

    def _run(self) -> None:
        while not self._done.wait(self.interval):
            self._emit(self.line())

    def _emit(self, line: str) -> None:
        try:
            self.report(line)  # type: ignore[misc]
        except Exception:  # a broken callback must not fail (or hide the state of) the copy
            log.exception("The copy's progress callback failed")


class _Retry:
    """Retries one blob's requests after transient failures, for at most ``budget`` seconds of failure in all.

    :param what: names the work in log lines (no credentials)
    :param stop: set when the whole copy is stopping: no more retries
    :param secrets: credentials to keep out of log lines
    :param budget: seconds
    """

    def __init__(
        self, what: str, stop: threading.Event, secrets: Sequence[str | None] = (), budget: float = RETRY_SECONDS
    ) -> None:
        self.what, self.stop, self.secrets, self.budget = what, stop, list(secrets), budget
        self.spent = 0.0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        delay = _FIRST_BACKOFF
        first_failure: float | None = None
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not _is_transient(exc):
                    raise
                now = time.monotonic()
                first_failure = now if first_failure is None else first_failure
                with self._lock:
                    spent = self.spent + (now - first_failure)
                if spent + delay > self.budget or self.stop.is_set():
                    with self._lock:
                        self.spent = spent
                    raise
                log.warning(
                    "%s: %s (%s); retrying in %.1f s",
                    self.what,
                    type(exc).__name__,
                    redact(error_detail(exc), self.secrets),
                    delay,
                )
                if self.stop.wait(delay):
                    raise _Cancelled() from None
                delay = min(delay * 2, _MAX_BACKOFF)
                continue
            if first_failure is not None:
                with self._lock:
                    self.spent += time.monotonic() - first_failure
            return result


def _is_transient(exc: BaseException) -> bool:
    """Connection trouble, timeouts, throttling and server errors: worth another try."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, ServiceRequestError | ServiceResponseError | ConnectionError | TimeoutError):
        return True
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        # 501/505 mean "not supported": retrying cannot help.
        return status in (408, 429) or (status is not None and status >= 500 and status not in (501, 505))
    return False


def _run_all(fn: Callable[[Any], None], items: Sequence[Any], concurrency: int, stop: threading.Event) -> None:
    """Run ``fn`` on every item, ``concurrency`` at a time; on the first failure stop the rest and raise it.

    Raises only once every running item has stopped, so that the caller's clean-up sees all it made.
    """
    if not items:
        return
    failure: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(items))), thread_name_prefix="aml-copy")
    try:
        futures = [pool.submit(fn, item) for item in items]
        for future in as_completed(futures):
            exc = future.exception()
            if exc is not None and not isinstance(exc, _Cancelled):
                failure = exc
                break
    except BaseException as exc:  # e.g. the task is being killed while we wait
        failure = exc
    finally:
        if failure is not None:
            stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    if failure is not None:
        raise failure


def _log_done(stats: CopyStats, src: DatastoreBackend, src_path: str, dst: DatastoreBackend, dst_path: str) -> None:
    log.info(
        "Copied %d file(s), %s, from %s to %s in %.1f s (%.1f MB/s%s; %d skipped)",
        stats.files,
        _human_size(stats.bytes),
        src.describe(src_path),
        dst.describe(dst_path),
        stats.seconds,
        stats.bytes_per_second / 1e6,
        ", server-side" if stats.server_side else "",
        stats.skipped,
    )


def _human_size(count: int) -> str:
    size = float(count)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} bytes"  # not reached


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "error_code", None) or ""
    return str(getattr(code, "value", code))


def _b64_hex(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).hex()
    except ValueError:
        return None
