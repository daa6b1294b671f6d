"""A datastore that is an Azure Blob Storage container (or Azurite, the storage emulator).

The Azure SDK is imported only when a client is built or an error is translated, so that parsing
DAG files that merely mention a blob datastore stays fast.

Every Azure error that leaves this module is a :class:`DatastoreError` raised ``from None``: SDK
errors can echo request URLs carrying SAS signatures, so the original is not chained, and the new
message is passed through :func:`redact` as well.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aml_airflow_provider._names import normalize_datastore_path
from aml_airflow_provider._secrets import redact
from aml_airflow_provider.exceptions import DatastoreError, UserErrorException
from aml_airflow_provider.storage import BLOB_CREDENTIALS as CREDENTIAL_KINDS
from aml_airflow_provider.storage.base import (
    DEFAULT_CHUNK_CONCURRENCY,
    DatastoreBackend,
    RemoteFile,
    new_temp_name,
)

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

log = logging.getLogger(__name__)

#: Retries of one request after a transient failure (connection error, timeout, 5xx, throttling).
DEFAULT_RETRY_TOTAL = 5
#: First back-off in seconds; later ones grow by powers of 2 (about 40 s in all for 5 retries).
DEFAULT_RETRY_BACKOFF = 2.0
DEFAULT_CONNECTION_TIMEOUT = 20
#: Per socket read: generous because one read may wait for a whole block to be stored.
DEFAULT_READ_TIMEOUT = 120
MiB = 1024 * 1024
#: Files up to this size go up in one Put Blob (the SDK's default is 64 MiB): one request, hashed by the service.
DEFAULT_SINGLE_PUT_SIZE = 32 * MiB
#: Block size of larger uploads. The SDK's default, 4 MiB, costs 8 times the requests; the SDK streams
#: blocks of this size from the file, so memory does not grow with it.
DEFAULT_BLOCK_SIZE = 32 * MiB
#: Range size of downloads after their first request (the SDK's own 4 MiB took 8 times as many requests
#: for a large blob, and two thirds more time: ``make bench``, section 5, blob → local folder).
DEFAULT_GET_RANGE_SIZE = 32 * MiB
#: Environment variables in which ``requests`` looks for a CA bundle (in this order).
_CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
_PUBLIC_SUFFIX = "core.windows.net"
_TEMP_PREFIX = ".aml-tmp-"
_AUTH_ERROR_STATUS = (401, 403)


@dataclass(frozen=True)
class Uploaded:
    """What :meth:`BlobBackend.put_file` stored.

    :param size: bytes sent
    :param etag: the new blob's ETag
    :param sent_md5: MD5 of the bytes sent (single-request uploads) or the ``content_md5`` given (block uploads)
    :param service_md5: MD5 the service computed of the bytes it received (single-request uploads only)
    """

    size: int
    etag: str
    sent_md5: bytes | None
    service_md5: bytes | None


class BlobBackend(DatastoreBackend):
    """A datastore kept in an Azure Blob Storage container.

    :param name: the datastore's name (for messages)
    :param settings: ``container_name``; ``account_name`` and/or ``account_url``; ``credential``, one of
        :data:`CREDENTIAL_KINDS` (inferred from ``secret`` when missing)
    :param secret: the connection string, account key or SAS token; ``None`` for
        ``default_azure_credential``. Never logged nor put in a message.
    :param chunk_concurrency: parallel blocks/ranges for one large blob
    :param max_single_put_size: files up to this size go up in one request (default
        :data:`DEFAULT_SINGLE_PUT_SIZE`)
    :param max_block_size: block size of larger uploads (default :data:`DEFAULT_BLOCK_SIZE`)
    :param max_single_get_size: bytes fetched by the first download request (default
        :data:`DEFAULT_GET_RANGE_SIZE`)
    :param max_chunk_get_size: range size of the rest of a download (default :data:`DEFAULT_GET_RANGE_SIZE`)
    :param retry_total: retries of a request after a transient failure
    :param retry_backoff: first back-off in seconds between retries
    :param connection_timeout: seconds to wait for a connection
    :param read_timeout: seconds to wait for each read from the service
    :param conn_id: the Airflow connection holding the credential (named in authentication errors)
    :param kw: passed to :class:`DatastoreBackend` (``file_concurrency``)
    """

    kind = "blob"

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        secret: str | None,
        *,
        chunk_concurrency: int = DEFAULT_CHUNK_CONCURRENCY,
        max_single_put_size: int = DEFAULT_SINGLE_PUT_SIZE,
        max_block_size: int = DEFAULT_BLOCK_SIZE,
        max_single_get_size: int = DEFAULT_GET_RANGE_SIZE,
        max_chunk_get_size: int = DEFAULT_GET_RANGE_SIZE,
        retry_total: int = DEFAULT_RETRY_TOTAL,
        retry_backoff: float = DEFAULT_RETRY_BACKOFF,
        connection_timeout: float = DEFAULT_CONNECTION_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        conn_id: str | None = None,
        **kw,
    ) -> None:
        super().__init__(name, **kw)
        self._secret = secret or None
        self.conn_id = conn_id
        self.chunk_concurrency = max(1, chunk_concurrency)
        self.container_name = str(settings.get("container_name") or "")
        if not self.container_name:
            raise DatastoreError(f"Datastore '{name}' has no container_name in its settings.")
        self.credential_kind = settings.get("credential") or _infer_credential(self._secret)
        if self.credential_kind not in CREDENTIAL_KINDS:
            raise DatastoreError(
                f"Datastore '{name}': unknown credential type {self.credential_kind!r}; "
                f"use one of {', '.join(CREDENTIAL_KINDS)}."
            )
        if self.credential_kind != "default_azure_credential" and not self._secret:
            raise DatastoreError(
                f"Datastore '{name}' authenticates with a {self.credential_kind} but its connection has "
                f"no password; store the {self.credential_kind} as the password of {self._conn_label()}."
            )
        account_name = settings.get("account_name") or None
        account_url = settings.get("account_url") or None
        if self.credential_kind == "connection_string":
            try:
                parsed = parse_connection_string(self._secret or "")
            except UserErrorException as exc:
                raise DatastoreError(f"Datastore '{name}': {exc}") from None
            account_name = parsed["account_name"] or account_name
            account_url = parsed["account_url"]
        if not account_url:
            if not account_name:
                raise DatastoreError(f"Datastore '{name}' has neither account_url nor account_name in its settings.")
            account_url = blob_account_url(account_name)
        self.account_url = _strip_query(account_url).rstrip("/")
        self.account_name = account_name or account_from_url(self.account_url) or "?"
        self._client_options: dict[str, Any] = {
            "connection_timeout": connection_timeout,
            "read_timeout": read_timeout,
            "max_single_put_size": max_single_put_size,
            "max_block_size": max_block_size,
            "max_single_get_size": max_single_get_size,
            "max_chunk_get_size": max_chunk_get_size,
        }
        self._retry = (retry_total, retry_backoff)
        self._client_lock = threading.Lock()
        # The SDK's threshold decides whether an upload is a single request (see put_file).
        self._single_put_limit = max_single_put_size

    # -- client -----------------------------------------------------------------------------------
    @cached_property
    def container_client(self) -> ContainerClient:
        """The SDK client of the container, built on first use (thread-safe: one client per backend)."""
        # cached_property has no lock since Python 3.12, and upload_many's threads all ask at once.
        with self._client_lock:
            client = self.__dict__.get("container_client")
            return client if client is not None else self._build_client()

    def _build_client(self) -> ContainerClient:
        from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

        _redact_transport_logs()
        retry_total, backoff = self._retry
        options = dict(self._client_options)
        # Explicit, shorter back-off than the SDK default (15 s, 18 s, 24 s...), and more attempts:
        # a task should ride out a blip of a few seconds but not hang for minutes.
        options["retry_policy"] = ExponentialRetry(
            initial_backoff=backoff,
            increment_base=2,
            retry_total=retry_total,
            random_jitter_range=backoff / 2,
        )
        # Our own transport, so it gets the timeouts that the SDK would otherwise hand to the one it makes.
        options["transport"] = self._transport(
            connection_timeout=options.pop("connection_timeout"), read_timeout=options.pop("read_timeout")
        )
        kind = self.credential_kind
        if kind == "connection_string":
            service = BlobServiceClient.from_connection_string(self._secret, **options)
            return service.get_container_client(self.container_name)
        if kind == "account_key":
            credential: Any = {"account_name": self.account_name, "account_key": self._secret}
        elif kind == "sas_token":
            credential = (self._secret or "").lstrip("?")
        else:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return ContainerClient(self.account_url, self.container_name, credential=credential, **options)

    def _transport(self, **config: Any) -> Any:
        """azure-core's ``requests`` transport, with a connection pool for every thread that may use it.

        ``requests`` keeps 10 connections per host and opens (and drops) one per request beyond that,
        while the copies here run up to ``file_concurrency`` x ``chunk_concurrency`` requests at once.
        It also reads the environment (proxies, CA bundle) on every request, a scan of ``os.environ``
        that costs more than a small request itself: so it reads it once, here, unless a proxy is set
        (whose ``no_proxy`` rules only ``requests`` applies).

        :param config: azure-core connection settings (timeouts)
        """
        import requests
        from azure.core.pipeline.transport import RequestsTransport
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        try:  # azure-core's own adapter (bigger socket reads); private, hence the fallback
            from azure.core.pipeline.transport._bigger_block_size_http_adapters import (
                BiggerBlockSizeHTTPAdapter as Adapter,
            )
        except ImportError:  # pragma: no cover - depends on the azure-core release
            Adapter = HTTPAdapter
        session = requests.Session()
        session.trust_env = bool(urllib.request.getproxies())
        bundle = next((os.environ[name] for name in _CA_BUNDLE_ENV if os.environ.get(name)), None)
        if bundle and not session.trust_env:
            config["connection_verify"] = bundle  # what requests would have read per request
        # As azure-core mounts it: retries are the SDK's job, not urllib3's.
        retries = Retry(total=False, redirect=False, raise_on_status=False)
        pool = max(10, self.file_concurrency * self.chunk_concurrency)
        adapter = Adapter(pool_connections=4, pool_maxsize=pool, max_retries=retries)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return RequestsTransport(session=session, session_owner=True, **config)

    def browse_url(self, path: str = "") -> str:
        from urllib.parse import quote

        return f"{self.account_url}/{self.container_name}/{quote(normalize_datastore_path(path))}"

    def spark_uri(self, path: str) -> str:
        """``wasbs://<container>@<account>.blob.<suffix>/<path>``: how v1 handed blob data to Databricks."""
        host = urlsplit(self.account_url).hostname or ""
        if not host.startswith(f"{self.account_name}.blob."):
            # Azurite or a custom endpoint: the cluster still names the account by its public host.
            host = f"{self.account_name}.blob.{_PUBLIC_SUFFIX}"
        return f"wasbs://{self.container_name}@{host}/{normalize_datastore_path(path)}"

    def adla_uri(self, path: str) -> str:
        """``wasb://<container>@<account>/<path>``: a linked storage account's data in U-SQL."""
        return f"wasb://{self.container_name}@{self.account_name}/{normalize_datastore_path(path)}"

    def describe(self, path: str = "") -> str:
        """E.g. ``datastore 'ds' (container 'c' in account 'acct') path 'a/b'``; never any credential.

        :param path: a path on the datastore
        """
        where = f"container '{self.container_name}' in account '{self.account_name}'"
        return f"datastore '{self.name}' ({where}) path '{path}'"

    def _conn_label(self) -> str:
        return f"connection '{self.conn_id}'" if self.conn_id else f"the Airflow connection of datastore '{self.name}'"

    def _error(self, exc: BaseException, action: str, path: str) -> DatastoreError:
        """A :class:`DatastoreError` for an SDK error: where, what went wrong, what to do; no secrets."""
        from azure.core.exceptions import (
            ClientAuthenticationError,
            HttpResponseError,
            ResourceNotFoundError,
            ServiceRequestError,
            ServiceResponseError,
        )

        where = self.describe(path)
        code = getattr(exc, "error_code", None) or ""
        code = str(getattr(code, "value", code))
        status = getattr(exc, "status_code", None)
        detail = error_detail(exc)
        if code == "ContainerNotFound":
            message = (
                f"Cannot {action} {where}: container '{self.container_name}' does not exist in account "
                f"'{self.account_name}'. Create it, or register the datastore with create_if_not_exists=True."
            )
        elif isinstance(exc, ResourceNotFoundError) or status == 404:
            message = f"Cannot {action} {where}: no such file ({code or 'not found'})."
        elif isinstance(exc, ClientAuthenticationError) or status in _AUTH_ERROR_STATUS:
            if self.credential_kind == "default_azure_credential":
                fix = (
                    "give the worker's Azure identity (managed identity, workload identity, environment "
                    "variables or `az login`) the 'Storage Blob Data Contributor' role on the container"
                )
            else:
                fix = (
                    f"check the {self.credential_kind} stored in {self._conn_label()}: it may be wrong, "
                    "expired, or lack the permission for this operation"
                )
            message = f"Cannot {action} {where}: access refused ({code or status}: {detail}); {fix}."
        elif isinstance(exc, ServiceRequestError | ServiceResponseError):
            message = (
                f"Cannot {action} {where}: the storage service at {self.account_url} did not answer "
                f"after {self._retry[0]} retries ({type(exc).__name__}: {detail}). Check the network, "
                "firewall and the account URL, then retry the task."
            )
        elif isinstance(exc, HttpResponseError):
            message = f"Cannot {action} {where}: Azure Storage answered {status} {code}: {detail}"
        else:
            message = f"Cannot {action} {where}: {type(exc).__name__}: {detail}"
        return DatastoreError(redact(message, [self._secret]))

    def check_access(self) -> None:
        """Fail now, with a :class:`DatastoreError` saying what to fix, if the container cannot be listed.

        Listing is what every read needs (``fetch`` lists before it downloads), so it is the check.
        """
        from azure.core.exceptions import AzureError

        try:
            pages = self.container_client.list_blobs(results_per_page=1).by_page()
            next(pages, None)
        except (AzureError, ValueError) as exc:
            raise self._error(exc, "list", "") from None

    # -- primitives -------------------------------------------------------------------------------
    def list_files(self, path: str) -> list[RemoteFile]:
        """Every blob at or under ``path``, sorted; folder placeholders of HNS accounts are skipped.

        :param path: a path on the datastore ('' for the whole container)
        """
        from azure.core.exceptions import AzureError

        path = normalize_datastore_path(path)
        folder = path + "/"
        files: list[RemoteFile] = []
        try:
            # One listing of the prefix covers both "path is a file" and "path is a folder".
            for blob in self.container_client.list_blobs(name_starts_with=path or None, include=["metadata"]):
                if path and blob.name != path and not blob.name.startswith(folder):
                    continue  # e.g. "data2/x" when listing "data"
                if (blob.metadata or {}).get("hdi_isfolder") == "true":
                    continue
                md5 = blob.content_settings.content_md5 if blob.content_settings else None
                files.append(RemoteFile(blob.name, blob.size, blob.etag, bytes(md5).hex() if md5 else None))
        except (AzureError, ValueError) as exc:
            raise self._error(exc, "list", path) from None
        files.sort(key=lambda f: f.path)
        return files

    def upload_file(self, local: Path, path: str, *, overwrite: bool) -> bool:
        """Stream ``local`` to the blob ``path``; large files go up as parallel blocks.

        :param local: the local file
        :param path: the blob name
        :param overwrite: replace an existing blob; if False and it exists, return False
        """
        return self.put_file(local, path, overwrite=overwrite) is not None

    def put_file(self, local: Path, path: str, *, overwrite: bool, content_md5: bytes | None = None) -> Uploaded | None:
        """Upload ``local`` to the blob ``path`` and say what the service stored.

        A file of up to ``max_single_put_size`` bytes is read, hashed and sent in one Put Blob; the
        service hashes what arrived and stores that as the blob's Content-MD5, so comparing
        :attr:`Uploaded.sent_md5` with :attr:`Uploaded.service_md5` checks the transfer end to end.
        A larger file goes up in parallel blocks, committed (atomically) with ``content_md5`` as its
        Content-MD5 when given: the service does not hash a block list.

        :param local: the local file
        :param path: the blob name
        :param overwrite: replace an existing blob; if False and it exists, return None
        :param content_md5: the MD5 of a large file, to store with it (ignored for single-request uploads)
        :returns: what was stored, or None if the blob existed and ``overwrite`` is off
        """
        from azure.core.exceptions import AzureError, ResourceExistsError
        from azure.storage.blob import ContentSettings

        path = _blob_name(path, self.name, "write")
        local = Path(local)
        try:
            # The blob client's upload returns the response headers (the container's, the client).
            client = self.container_client.get_blob_client(path)
            with open(local, "rb") as stream:
                size = os.fstat(stream.fileno()).st_size
                if size <= self._single_put_limit:
                    data = stream.read()
                    size, sent = len(data), hashlib.md5(data, usedforsecurity=False).digest()
                    # A conditional Put Blob (If-None-Match: *) guards the race when not overwriting.
                    result = client.upload_blob(data, length=size, overwrite=overwrite)
                    stored = result.get("content_md5")
                    return Uploaded(size, result["etag"], sent, bytes(stored) if stored else None)
                if not overwrite and self.exists(path):
                    return None  # don't send gigabytes just to have the final commit refused
                settings = ContentSettings(content_md5=content_md5) if content_md5 else None
                result = client.upload_blob(
                    stream,
                    length=size,
                    overwrite=overwrite,
                    content_settings=settings,
                    max_concurrency=self.chunk_concurrency,
                )
                return Uploaded(size, result["etag"], content_md5, None)
        except ResourceExistsError as exc:
            if not overwrite:
                return None
            raise self._error(exc, "write", path) from None
        except (AzureError, ValueError) as exc:
            raise self._error(exc, "write", path) from None
        except OSError as exc:
            raise DatastoreError(f"Cannot upload {local} to {self.describe(path)}: {exc}") from exc

    def exists(self, path: str) -> bool:
        """Whether the blob ``path`` exists (a missing container is left to the request that follows)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            self.container_client.get_blob_client(path).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    def download_file(self, path: str, local: Path) -> int:
        """Download the blob ``path`` into a temp file next to ``local``, then rename it; return its size.

        :param path: the blob name
        :param local: the local destination (its folder must exist)
        """
        from azure.core.exceptions import AzureError

        path = normalize_datastore_path(path)
        local = Path(local)
        tmp = local.parent / new_temp_name(_TEMP_PREFIX)
        try:
            with open(tmp, "wb") as stream:
                downloader = self.container_client.download_blob(path, max_concurrency=self.chunk_concurrency)
                size = downloader.readinto(stream)
            os.replace(tmp, local)
        except (AzureError, ValueError) as exc:
            tmp.unlink(missing_ok=True)
            raise self._error(exc, "read", path) from None
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise DatastoreError(f"Cannot download {self.describe(path)} to {local}: {exc}") from exc
        except BaseException:  # e.g. KeyboardInterrupt: still leave no temp file behind
            tmp.unlink(missing_ok=True)
            raise
        return size

    def delete_prefix(self, path: str) -> int:
        """Delete every blob at or under ``path`` (in parallel); return how many were deleted.

        :param path: a path on the datastore (not the root)
        """
        from azure.core.exceptions import AzureError, ResourceNotFoundError

        path = _blob_name(path, self.name, "delete")
        files = self.list_files(path)
        deleted = 0
        lock = threading.Lock()

        def one(item: object) -> None:
            nonlocal deleted
            name = item.path  # type: ignore[attr-defined]
            try:
                self.container_client.delete_blob(name, delete_snapshots="include")
            except ResourceNotFoundError:
                return  # already gone: the goal is reached
            except AzureError as exc:
                raise self._error(exc, "delete", name) from None
            with lock:
                deleted += 1

        self._parallel(one, files)
        return deleted


# -- helpers used when a datastore is registered --------------------------------------------------
def blob_account_url(account_name: str, protocol: str | None = None, endpoint: str | None = None) -> str:
    """The blob service URL of a storage account, with SDK v1's ``protocol``/``endpoint`` semantics.

    ``endpoint`` is v1's storage suffix (``core.windows.net``, ``core.chinacloudapi.cn``), giving
    ``<protocol>://<account>.blob.<endpoint>``. An endpoint with a port, an IP address or
    ``localhost`` (e.g. Azurite's ``127.0.0.1:10000``, optionally as a URL) gives the path-style
    ``<protocol>://<host:port>/<account>``.

    :param account_name: the storage account
    :param protocol: ``https`` (default) or ``http``; defaults to the scheme when ``endpoint`` is a URL
    :param endpoint: storage suffix, emulator host, or URL; default ``core.windows.net``
    """
    if not account_name:
        raise UserErrorException("A storage account name is required to build its URL.")
    if not endpoint:
        return f"{protocol or 'https'}://{account_name}.blob.{_PUBLIC_SUFFIX}"
    endpoint = endpoint.strip()
    if "://" in endpoint:
        parts = urlsplit(endpoint)
        scheme, netloc, url_path = protocol or parts.scheme, parts.netloc, parts.path.strip("/")
    else:
        scheme, netloc, url_path = protocol or "https", endpoint.strip("/"), ""
        if "/" in netloc:
            netloc, _, url_path = netloc.partition("/")
    if not netloc:
        raise UserErrorException(f"Invalid storage endpoint {endpoint!r}: give a suffix, a host:port or a URL.")
    if _is_path_style(netloc):
        return f"{scheme}://{netloc}/{url_path or account_name}"
    host = netloc.lower()
    if host.startswith(f"{account_name.lower()}."):
        return f"{scheme}://{netloc}"  # already the account's own endpoint
    if host.startswith("blob."):
        netloc = netloc[len("blob.") :]  # "blob.core.windows.net" given instead of the suffix
    return f"{scheme}://{account_name}.blob.{netloc}"


def parse_connection_string(conn_str: str) -> dict[str, str | None]:
    """The non-secret parts of a storage connection string.

    :param conn_str: ``DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;...``
    :returns: ``account_name``, ``account_url`` (``BlobEndpoint``, or built from the protocol,
        account and ``EndpointSuffix``), ``protocol``, ``endpoint_suffix`` and ``credential``
        (``account_key``, ``sas_token`` or ``None``). Keys and signatures are not returned.
    """
    fields: dict[str, str] = {}
    for segment in (conn_str or "").split(";"):
        segment = segment.strip()
        if not segment:
            continue
        key, sep, value = segment.partition("=")
        if not sep or not key.strip():
            # Don't quote the segment: it may be (part of) a key.
            raise UserErrorException("Malformed storage connection string: every part must look like Key=Value.")
        fields[key.strip().lower()] = value.strip()
    if fields.get("usedevelopmentstorage", "").lower() == "true":
        return {
            "account_name": "devstoreaccount1",
            "account_url": "http://127.0.0.1:10000/devstoreaccount1",
            "protocol": "http",
            "endpoint_suffix": None,
            "credential": "account_key",
        }
    protocol = fields.get("defaultendpointsprotocol") or "https"
    suffix = fields.get("endpointsuffix") or None
    account_name = fields.get("accountname") or None
    account_url = (fields.get("blobendpoint") or "").rstrip("/") or None
    if account_url:
        account_url = _strip_query(account_url)
        account_name = account_name or account_from_url(account_url)
    elif account_name:
        account_url = blob_account_url(account_name, protocol, suffix)
    else:
        raise UserErrorException("Storage connection string has neither AccountName nor BlobEndpoint.")
    credential = None
    if fields.get("accountkey"):
        credential = "account_key"
    elif fields.get("sharedaccesssignature"):
        credential = "sas_token"
    return {
        "account_name": account_name,
        "account_url": account_url,
        "protocol": protocol,
        "endpoint_suffix": suffix,
        "credential": credential,
    }


def ensure_container(settings: Mapping[str, Any], secret: str | None, *, name: str | None = None, **kw) -> bool:
    """Create the datastore's container if it does not exist yet.

    :param settings: the blob datastore settings (as for :class:`BlobBackend`)
    :param secret: its credential
    :param name: datastore name for messages (default: the container name)
    :param kw: passed to :class:`BlobBackend`
    :returns: True if the container was created, False if it existed
    """
    from azure.core.exceptions import AzureError, ResourceExistsError

    backend = BlobBackend(name or str(settings.get("container_name")), settings, secret, **kw)
    try:
        backend.container_client.create_container()
    except ResourceExistsError:
        return False
    except (AzureError, ValueError) as exc:
        raise backend._error(exc, "create the container for", "") from None
    log.info("Created container '%s' in storage account '%s'", backend.container_name, backend.account_name)
    return True


# -- private helpers ------------------------------------------------------------------------------
class _RedactingFilter(logging.Filter):
    """Redact SAS signatures from records of a logger we do not own."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a malformed record: let the handler report it as usual
            return True
        if "sig=" in message.lower():
            record.msg, record.args = redact(message), None
        return True


_URLLIB3_LOGGER = "urllib3.connectionpool"
_filter_lock = threading.Lock()


def _redact_transport_logs() -> None:
    """Keep SAS signatures out of urllib3's DEBUG log.

    The SDK's own logging policy redacts ``sig=``, but urllib3 logs every request line with the full
    query string at DEBUG level, so an Airflow task running with DEBUG logging would print the SAS.
    """
    logger = logging.getLogger(_URLLIB3_LOGGER)
    with _filter_lock:
        if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
            logger.addFilter(_RedactingFilter())


def _blob_name(path: str, datastore: str, action: str) -> str:
    path = normalize_datastore_path(path)
    if not path:
        raise DatastoreError(f"Refusing to {action} the root of datastore '{datastore}'; give a path in it.")
    return path


def _infer_credential(secret: str | None) -> str:
    """Guess the credential kind of an old registration that did not record it."""
    if not secret:
        return "default_azure_credential"
    lowered = secret.lower()
    if "accountname=" in lowered or "blobendpoint=" in lowered or "usedevelopmentstorage=" in lowered:
        return "connection_string"
    if "sig=" in lowered:
        return "sas_token"
    return "account_key"


def _is_path_style(netloc: str) -> bool:
    """Emulators address accounts by path: a host with a port, an IP address or localhost."""
    parts = urlsplit(f"//{netloc}")
    try:
        if parts.port is not None:
            return True
    except ValueError as exc:
        raise UserErrorException(f"Invalid storage endpoint {netloc!r}: bad port.") from exc
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def account_from_url(url: str) -> str | None:
    """The account name in a blob service URL (``https://<account>.blob...`` or path-style ``http://host:port/<account>``)."""
    parts = urlsplit(url)
    if _is_path_style(parts.netloc):
        return parts.path.strip("/").split("/", 1)[0] or None
    return (parts.hostname or "").split(".", 1)[0] or None


def _strip_query(url: str) -> str:
    """Drop a query string (a SAS token pasted into a URL must not reach messages)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def error_detail(exc: BaseException) -> str:
    """The first line of an SDK error's message (the rest repeats request details); not yet redacted."""
    text = (getattr(exc, "message", None) or str(exc) or "").strip()
    return text.splitlines()[0] if text else ""
