"""A loopback stand-in for the Azure Data Lake Analytics job service and its Microsoft Entra token endpoint.

Data Lake Analytics was retired in 2024, so contract tests run against this server instead. It is written
from the public ADLA Job REST reference, api-version ``2016-11-01`` (``Job - Create``: ``PUT
/Jobs/{jobIdentity}``, ``Job - Get``: ``GET /Jobs/{jobIdentity}``, ``Job - Cancel``: ``POST
/Jobs/{jobIdentity}/CancelJob``; models ``CreateJobParameters``, ``JobInformation``, ``JobErrorDetails``,
``JobState``, ``JobResult``), records every request and plays scripted job-state sequences::

    with AdlaServer() as server:
        server.script_next_job(["Accepted", "Running", "Ended"], result="Failed", errors=[{"errorId": "E_X"}])
        credential = server.credential()  # a real azure.identity.ClientSecretCredential
        token = credential.get_token(DATALAKE_SCOPE).token
        ...  # requests to server.url + "/Jobs/<guid>?api-version=2016-11-01" with "Authorization: Bearer <token>"

Two servers run, each on ``127.0.0.1`` with an ephemeral port, in daemon threads:

* the job service, plain HTTP, at :attr:`AdlaServer.url`. Every request needs ``api-version=2016-11-01``
  and a bearer token that the token endpoint issued for the Data Lake resource (or ``static_token``);
* a Microsoft Entra (AAD) stand-in, HTTPS, at :attr:`AdlaServer.authority`, with a certificate made at
  :meth:`AdlaServer.start` by a throwaway CA whose PEM is :attr:`AdlaServer.ca_file`. It serves what MSAL
  (under ``azure.identity.ClientSecretCredential``) fetches: ``/{tenant}/v2.0/.well-known/openid-configuration``
  and ``POST /{tenant}/oauth2/v2.0/token`` (``grant_type=client_credentials``). MSAL sends instance
  discovery to ``login.microsoftonline.com`` for any authority host it does not know, so credentials must be
  built with ``disable_instance_discovery=True``; :meth:`AdlaServer.credential` does that.

Trusting the certificate: set ``REQUESTS_CA_BUNDLE`` (sync clients: ``requests``, azure-core's
``RequestsTransport``) and ``SSL_CERT_FILE`` (``ssl.create_default_context``: aiohttp, the ``.aio``
credentials) to :attr:`AdlaServer.ca_file` (:meth:`AdlaServer.ca_env`), or pass
``connection_verify=server.ca_file`` to the credential.

Jobs: each ``GET`` of a job returns its current scripted state and moves it on after ``polls_per_state``
such reads; the last state sticks and ``Ended`` is final. Creating and cancelling never advance a script.
Injected failures (:meth:`AdlaServer.fail_next`) come before authentication and never change any state.
Tokens and the client secret never appear in any response body.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import copy
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.loopback import RecordedRequest, parse_query, read_body

API_VERSION = "2016-11-01"
#: The Data Lake resource (audience) tokens for the job service are issued for.
DATALAKE_RESOURCE = "https://datalake.azure.net/"
#: The scope a client-credentials request names for it (resource + ``/.default``).
DATALAKE_SCOPE = DATALAKE_RESOURCE + "/.default"

#: ``JobState`` values: the 2016-11-01 enum plus ``Yielded`` and ``Finalizing`` of later versions.
JOB_STATES = frozenset(
    {
        "Accepted",
        "Compiling",
        "Ended",
        "New",
        "Queued",
        "Running",
        "Scheduling",
        "Starting",
        "Paused",
        "WaitingForCapacity",
        "Yielded",
        "Finalizing",
    }
)
#: ``JobResult`` values an ended job can have (``None`` is the result of a job that has not ended).
JOB_RESULTS = frozenset({"Succeeded", "Failed", "Cancelled"})
#: States in which a job counts as started (its ``startTime`` is set on entering the first of them).
_STARTED_STATES = frozenset({"Starting", "Running", "Finalizing", "Yielded", "Paused"})
#: What a job does when nothing was queued with :meth:`AdlaServer.script_next_job`.
DEFAULT_JOB_SCRIPT: tuple[str, ...] = ("Accepted", "Compiling", "Queued", "Running", "Ended")

#: ``JobErrorDetails`` fields (all read-only in the reference).
JOB_ERROR_FIELDS = frozenset(
    {
        "errorId",
        "severity",
        "source",
        "message",
        "description",
        "details",
        "lineNumber",
        "startOffset",
        "endOffset",
        "resolution",
        "filePath",
        "helpLink",
        "internalDiagnostics",
        "innerError",
    }
)
#: ``JobInnerError`` fields.
JOB_INNER_ERROR_FIELDS = frozenset(
    {
        "diagnosticCode",
        "severity",
        "details",
        "component",
        "errorId",
        "helpLink",
        "internalDiagnostics",
        "message",
        "resolution",
        "source",
        "description",
    }
)
SEVERITY_TYPES = frozenset({"Warning", "Error", "Info", "SevereWarning", "Deprecated", "UserWarning"})
COMPILE_MODES = frozenset({"Semantic", "Full", "SingleBox"})
#: Priority a job gets when the submission names none ("By default, a job has a priority of 1000").
DEFAULT_PRIORITY = 1000

_GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_JOB_PATH_RE = re.compile(r"^/jobs/(?P<job>[^/]+)(?P<cancel>/canceljob)?/?$", re.IGNORECASE)
_JOBS_PREFIX_RE = re.compile(r"^/jobs(/|$)", re.IGNORECASE)
_OPENID_PATH_RE = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
_TOKEN_PATH_RE = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
#: Scopes MSAL may add to a request besides the resource's ``/.default`` one.
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})

_CODE_BY_STATUS = {
    400: "BadRequest",
    401: "AuthenticationFailed",
    403: "AuthorizationFailed",
    404: "NotFound",
    408: "RequestTimeout",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


class ApiError(Exception):
    """A job-service error answer: HTTP ``status`` with ``{"error": {"code": ..., "message": ...}}``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


class _AadError(Exception):
    """A token-endpoint error answer, in the OAuth 2.0 shape Microsoft Entra uses."""

    def __init__(self, status: int, error: str, aadsts: int, description: str) -> None:
        super().__init__(f"{status} {error}: AADSTS{aadsts}")
        self.status = status
        self.error = error
        self.aadsts = aadsts
        self.description = description

    def body(self) -> dict[str, Any]:
        trace_id = str(uuid.uuid4())
        correlation_id = str(uuid.uuid4())
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": (
                f"AADSTS{self.aadsts}: {self.description} Trace ID: {trace_id} Correlation ID: {correlation_id} "
                f"Timestamp: {stamp}"
            ),
            "error_codes": [self.aadsts],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
        }


def _invalid(message: str) -> ApiError:
    return ApiError(400, "InvalidRequestContent", message)


@dataclass
class _Script:
    states: list[str]
    result: str
    errors: list[dict[str, Any]]


@dataclass
class _FailureRule:
    status: int
    remaining: int
    method: str | None
    retry_after: float | None
    code: str
    message: str | None


@dataclass
class _Token:
    client_id: str
    scope: str
    resource: str
    issued_at: float
    expires_at: float
    revoked: bool = False


@dataclass
class _Job:
    job_id: str
    payload: dict[str, Any]
    name: str
    submitter: str
    degree_of_parallelism: int
    priority: int
    properties: dict[str, Any]
    log_file_patterns: list[str] | None
    related: dict[str, Any] | None
    states: list[str]
    scripted_result: str
    scripted_errors: list[dict[str, Any]]
    submit_time: float
    state_index: int = 0
    gets: int = 0
    cancelled: bool = False
    start_time: float | None = None
    end_time: float | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> str:
        return "Ended" if self.cancelled else self.states[self.state_index]

    @property
    def result(self) -> str:
        if self.cancelled:
            return "Cancelled"
        return self.scripted_result if self.state == "Ended" else "None"

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.scripted_errors if self.state == "Ended" and not self.cancelled else []


def _now() -> float:
    return time.time()


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="microseconds")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_guid(value: Any, where: str) -> None:
    if not isinstance(value, str) or not _GUID_RE.match(value):
        raise _invalid(f"{where} must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), not {value!r}.")


def _check_error_details(errors: Any) -> list[dict[str, Any]]:
    """Validate :meth:`AdlaServer.script_next_job` ``errors`` (``JobErrorDetails`` dicts); return a copy."""
    if not isinstance(errors, list):
        raise ValueError("errors must be a list of JobErrorDetails dicts")
    for position, error in enumerate(errors):
        if not isinstance(error, dict):
            raise ValueError(f"errors[{position}] must be a dict, not {type(error).__name__}")
        unknown = sorted(set(error) - JOB_ERROR_FIELDS)
        if unknown:
            raise ValueError(f"errors[{position}] has fields JobErrorDetails does not: {', '.join(unknown)}")
        severity = error.get("severity")
        if severity is not None and severity not in SEVERITY_TYPES:
            raise ValueError(f"errors[{position}].severity {severity!r} is not one of {sorted(SEVERITY_TYPES)}")
        inner = error.get("innerError")
        if inner is not None:
            if not isinstance(inner, dict):
                raise ValueError(f"errors[{position}].innerError must be a dict")
            unknown = sorted(set(inner) - JOB_INNER_ERROR_FIELDS)
            if unknown:
                raise ValueError(
                    f"errors[{position}].innerError has fields JobInnerError does not: {', '.join(unknown)}"
                )
    return copy.deepcopy(errors)


def _check_create(body: Any) -> dict[str, Any]:
    """Validate a ``CreateJobParameters`` body; return the job's settings."""
    if not isinstance(body, dict):
        raise _invalid("The request body must be a JSON object (CreateJobParameters).")
    job_type = body.get("type")
    if job_type is None:
        raise _invalid("The job 'type' is required; U-SQL jobs are submitted with type 'USql'.")
    if job_type != "USql":
        raise _invalid(f"Job type {job_type!r} is not supported by this account; expected 'USql'.")
    name = body.get("name")
    if name is None:
        raise _invalid("The job 'name' is required.")
    if not isinstance(name, str) or not name.strip():
        raise _invalid(f"The job 'name' must be a non-empty string, not {name!r}.")
    properties = body.get("properties")
    if properties is None:
        raise _invalid("The job 'properties' are required: {'type': 'USql', 'script': <U-SQL script>}.")
    if not isinstance(properties, dict):
        raise _invalid("The job 'properties' must be a JSON object: {'type': 'USql', 'script': <U-SQL script>}.")
    properties_type = properties.get("type")
    if properties_type is None:
        raise _invalid("'properties.type' is required; U-SQL job properties have type 'USql'.")
    if properties_type != job_type:
        raise _invalid(f"'properties.type' {properties_type!r} does not match the job type {job_type!r}.")
    script = properties.get("script")
    if script is None:
        raise _invalid("'properties.script' is required: the U-SQL script to run.")
    if not isinstance(script, str) or not script.strip():
        raise _invalid("'properties.script' must be a non-empty string: the U-SQL script to run.")
    runtime_version = properties.get("runtimeVersion")
    if runtime_version is not None and not isinstance(runtime_version, str):
        raise _invalid(f"'properties.runtimeVersion' must be a string, not {runtime_version!r}.")
    compile_mode = properties.get("compileMode")
    if compile_mode is not None and compile_mode not in COMPILE_MODES:
        raise _invalid(f"'properties.compileMode' {compile_mode!r} is not one of {', '.join(sorted(COMPILE_MODES))}.")
    degree = body.get("degreeOfParallelism", 1)
    if degree is None:
        degree = 1
    if not _is_int(degree):
        raise _invalid(f"'degreeOfParallelism' must be an integer, not {degree!r}.")
    if degree < 1:
        raise _invalid(f"'degreeOfParallelism' must be greater than 0, not {degree}.")
    priority = body.get("priority", DEFAULT_PRIORITY)
    if priority is None:
        priority = DEFAULT_PRIORITY
    if not _is_int(priority):
        raise _invalid(f"'priority' must be an integer, not {priority!r}.")
    if priority < 1:
        raise _invalid(f"'priority' must be greater than 0, not {priority}.")
    patterns = body.get("logFilePatterns")
    if patterns is not None and (not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns)):
        raise _invalid("'logFilePatterns' must be a list of strings.")
    related = body.get("related")
    if related is not None:
        if not isinstance(related, dict):
            raise _invalid("'related' must be a JSON object (JobRelationshipProperties).")
        if related.get("recurrenceId") is None:
            raise _invalid("'related.recurrenceId' is required when 'related' is given.")
        for key in ("pipelineId", "runId", "recurrenceId"):
            if related.get(key) is not None:
                _check_guid(related[key], f"'related.{key}'")
    kept = {"type": "USql", "script": script}
    if runtime_version is not None:
        kept["runtimeVersion"] = runtime_version
    if compile_mode is not None:
        kept["compileMode"] = compile_mode
    return {
        "name": name,
        "degree_of_parallelism": degree,
        "priority": priority,
        "properties": kept,
        "log_file_patterns": list(patterns) if patterns is not None else None,
        "related": copy.deepcopy(related),
    }


def _make_certificates(directory: str) -> tuple[str, str, str]:
    """Make a throwaway CA and a server certificate for ``127.0.0.1``/``localhost`` signed by it.

    :return: the paths of the CA certificate, the server certificate and the server key (PEM)
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    not_before, not_after = now - timedelta(minutes=5), now + timedelta(days=2)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AdlaServer throwaway test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca_path = os.path.join(directory, "adla-test-ca.pem")
    cert_path = os.path.join(directory, "adla-aad-server.pem")
    key_path = os.path.join(directory, "adla-aad-server-key.pem")
    with open(ca_path, "wb") as handle:
        handle.write(ca_cert.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as handle:
        handle.write(server_cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            server_key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return ca_path, cert_path, key_path


class _Handler(BaseHTTPRequestHandler):
    """Reads one request, hands it to the owning server's ``dispatch``, writes the answer."""

    server: _HTTPServer
    # HTTP/1.0: one request per connection, so nothing is served once stop() has returned.
    protocol_version = "HTTP/1.0"
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _read_body(self) -> bytes:
        return read_body(self)

    def _handle(self) -> None:
        split = urlsplit(self.path)
        query = parse_query(split.query)
        raw = self._read_body()
        status, headers, payload = self.server.dispatch(
            self.command, split.path, query, raw, dict(self.headers.items())
        )
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        if payload is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    dispatch: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer (or failing a TLS handshake) is not the test's business


class _TLSHTTPServer(_HTTPServer):
    """HTTPS: the TLS handshake runs in each connection's own thread, so a stuck client blocks no other."""

    ssl_context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(30)
        tls = self.ssl_context.wrap_socket(request, server_side=True)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            with contextlib.suppress(OSError):
                tls.shutdown(socket.SHUT_WR)
            tls.close()


class AdlaServer:
    """ADLA job service (plain HTTP) + AAD token endpoint (HTTPS, self-signed), on ``127.0.0.1``.

    :param account: the Data Lake Analytics account name (shows in ``logFolder``)
    :param static_token: a bearer token the job service accepts besides those the token endpoint issued
        (never expires, not affected by :meth:`expire_tokens`)
    :param token_lifetime: ``expires_in`` of issued tokens, in seconds; the job service rejects a token
        once it is that old. Below 300, azure-identity/MSAL treat a cached token as expired at once and
        fetch a new one on every ``get_token``
    :param polls_per_state: how many ``GET`` of a job return each scripted state before the next
    """

    tenant_id: str = "contoso-tenant"
    client_id: str = "adla-client"
    client_secret: str = "adla-secret-value"

    def __init__(
        self,
        *,
        account: str = "myadla",
        static_token: str | None = None,
        token_lifetime: int = 3600,
        polls_per_state: int = 1,
    ) -> None:
        if polls_per_state < 1:
            raise ValueError("polls_per_state must be at least 1")
        if token_lifetime < 1:
            raise ValueError("token_lifetime must be at least 1 second")
        self.account = account
        self.static_token = static_token
        self.token_lifetime = token_lifetime
        self.polls_per_state = polls_per_state
        self.host = "127.0.0.1"
        #: Every job-service request, in the order received (failed, unauthenticated and unknown ones included).
        self.requests: list[RecordedRequest] = []
        #: Every token-endpoint request (``POST /{tenant}/oauth2/v2.0/token``), accepted or not, in order.
        #: Their bodies hold the client secret as sent; the server writes it nowhere else.
        self.token_requests: list[RecordedRequest] = []
        #: Every request to the AAD stand-in (discovery documents included), in order.
        self.aad_requests: list[RecordedRequest] = []
        #: Every access token issued, in order.
        self.issued_tokens: list[str] = []
        #: Job ids as sent to ``CancelJob`` (canonical lower-case form; unknown jobs are not listed), in order.
        self.cancelled: list[str] = []
        #: Exceptions raised by the server's own code while answering (each answered 500).
        self.internal_errors: list[BaseException] = []
        #: Called with the body of each job created (under the server's lock, before it answers).
        self.on_submit: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}
        self._submitted: list[dict[str, Any]] = []
        self._scripts: deque[_Script] = deque()
        self._failures: list[_FailureRule] = []
        self._tokens: dict[str, _Token] = {}
        self._jobs_httpd: _HTTPServer | None = None
        self._aad_httpd: _TLSHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._tempdir: str | None = None
        self._ca_file: str | None = None
        self._jobs_port = 0
        self._aad_port = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> AdlaServer:
        """Make the certificates, listen on two ephemeral ports and serve from daemon threads; return ``self``."""
        if self._jobs_httpd is not None:
            return self
        self._tempdir = tempfile.mkdtemp(prefix="adla-server-")
        ca_path, cert_path, key_path = _make_certificates(self._tempdir)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        self._ca_file = ca_path

        jobs = _HTTPServer((self.host, 0), _Handler)
        jobs.dispatch = self._dispatch_jobs
        aad = _TLSHTTPServer((self.host, 0), _Handler)
        aad.ssl_context = context
        aad.dispatch = self._dispatch_aad
        self._jobs_httpd, self._aad_httpd = jobs, aad
        self._jobs_port, self._aad_port = jobs.server_address[1], aad.server_address[1]
        for name, httpd in (("adla-jobs", jobs), ("adla-aad", aad)):
            thread = threading.Thread(target=httpd.serve_forever, name=f"{name}-{httpd.server_address[1]}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and delete the certificate files; the recorded state stays readable."""
        servers = [s for s in (self._jobs_httpd, self._aad_httpd) if s is not None]
        threads, self._threads = self._threads, []
        self._jobs_httpd = self._aad_httpd = None
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()
        for thread in threads:
            thread.join(timeout=5)
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    def __enter__(self) -> AdlaServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _require_started(self) -> None:
        if not self._jobs_port:
            raise RuntimeError("AdlaServer is not started: call start() or use it as a context manager")

    @property
    def url(self) -> str:
        """The job service's base URL, ``http://127.0.0.1:<port>`` (for ``https://<account>.azuredatalakeanalytics.net``)."""
        self._require_started()
        return f"http://{self.host}:{self._jobs_port}"

    @property
    def authority(self) -> str:
        """The AAD authority host, ``https://127.0.0.1:<port>``, for ``ClientSecretCredential(authority=...)``."""
        self._require_started()
        return f"https://{self.host}:{self._aad_port}"

    @property
    def ca_file(self) -> str:
        """Path of the PEM certificate of the CA that signed the authority's certificate (deleted by :meth:`stop`)."""
        self._require_started()
        assert self._ca_file is not None
        return self._ca_file

    @property
    def token_url(self) -> str:
        """The token endpoint, ``<authority>/<tenant_id>/oauth2/v2.0/token``."""
        return f"{self.authority}/{self.tenant_id}/oauth2/v2.0/token"

    def attach_configuration(self) -> Any:
        """``AdlaCompute.attach_configuration`` for this account: its endpoint, service principal and authority."""
        from aml_airflow_provider.core.compute import AdlaCompute

        return AdlaCompute.attach_configuration(
            "rg",
            self.account,
            endpoint=self.url,
            tenant_id=self.tenant_id,
            client_id=self.client_id,
            client_secret=self.client_secret,
            authority=self.authority,
        )

    def ca_env(self) -> dict[str, str]:
        """Environment variables that make ``requests`` and ``ssl`` trust the authority (for ``monkeypatch.setenv``)."""
        return {"REQUESTS_CA_BUNDLE": self.ca_file, "SSL_CERT_FILE": self.ca_file}

    def credential(self, **kwargs: Any) -> Any:
        """A real ``azure.identity.ClientSecretCredential`` for this server's tenant, client and secret.

        It is built with ``disable_instance_discovery=True`` (MSAL would otherwise ask
        ``login.microsoftonline.com`` about the authority) and ``connection_verify=ca_file`` (so no environment
        variable is needed); ``kwargs`` are passed on and override these.
        """
        from azure.identity import ClientSecretCredential

        options: dict[str, Any] = {
            "authority": self.authority,
            "disable_instance_discovery": True,
            "connection_verify": self.ca_file,
        }
        options.update(kwargs)
        return ClientSecretCredential(self.tenant_id, self.client_id, self.client_secret, **options)

    # -- test controls and inspection --------------------------------------------------------------

    def jobs_requests(self, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests under ``/jobs`` (any case), of ``method`` if given, in order."""
        with self._lock:
            return [
                request
                for request in self.requests
                if _JOBS_PREFIX_RE.match(request.path) and (method is None or request.method == method.upper())
            ]

    def submitted(self) -> list[dict[str, Any]]:
        """The bodies of the ``PUT /Jobs/{jobId}`` requests that created a job, in order.

        A repeated job id creates no job (409) and so adds nothing here; see ``jobs_requests("PUT")``.
        """
        with self._lock:
            return copy.deepcopy(self._submitted)

    def job(self, job_id: str) -> dict[str, Any]:
        """The server's record of a job: payload, states, state index, result, cancelled, times, ..."""
        with self._lock:
            job = self._jobs.get(job_id.lower())
            if job is None:
                raise KeyError(f"no job {job_id}")
            return copy.deepcopy(
                {
                    "jobId": job.job_id,
                    "name": job.name,
                    "payload": job.payload,
                    "submitter": job.submitter,
                    "degreeOfParallelism": job.degree_of_parallelism,
                    "priority": job.priority,
                    "properties": job.properties,
                    "states": job.states,
                    "state_index": job.state_index,
                    "state": job.state,
                    "result": job.result,
                    "scripted_result": job.scripted_result,
                    "errors": job.scripted_errors,
                    "gets": job.gets,
                    "cancelled": job.cancelled,
                    "submit_time": job.submit_time,
                    "start_time": job.start_time,
                    "end_time": job.end_time,
                }
            )

    def script_next_job(
        self, states: list[str], *, result: str = "Succeeded", errors: list[dict[str, Any]] | None = None
    ) -> None:
        """Queue how the next created job behaves (scripts are used in the order queued).

        :param states: ``JobState`` values in order, one per ``polls_per_state`` GETs, the last sticking;
            ``Ended`` may only be the last
        :param result: the ``JobResult`` once the job is ``Ended``: ``Succeeded``, ``Failed`` or ``Cancelled``
        :param errors: the ``errorMessage`` list (``JobErrorDetails`` dicts) once the job is ``Ended``
        """
        checked = list(states)
        if not checked:
            raise ValueError("states must not be empty")
        for position, state in enumerate(checked):
            if state not in JOB_STATES:
                raise ValueError(f"unknown JobState {state!r}; expected one of {sorted(JOB_STATES)}")
            if state == "Ended" and position != len(checked) - 1:
                raise ValueError("'Ended' must be the last state: an ended job never changes")
        if result not in JOB_RESULTS:
            raise ValueError(f"result must be one of {sorted(JOB_RESULTS)}, not {result!r}")
        checked_errors = _check_error_details(errors) if errors is not None else []
        if checked_errors and checked[-1] != "Ended":
            raise ValueError("errors only show once the job has ended: make 'Ended' the last state")
        with self._lock:
            self._scripts.append(_Script(checked, result, checked_errors))

    def finish_job(self, job_id: str) -> None:
        """End a job whose script stopped on a state before ``Ended`` (held until the test says so).

        The next ``GET`` of the job reports ``Ended`` with the result its script named.
        """
        with self._lock:
            job = self._jobs.get(job_id.lower())
            if job is None:
                raise KeyError(f"no job {job_id}")
            if job.cancelled or job.state == "Ended":
                raise ValueError(f"job {job_id} has already ended: an ended job never changes")
            job.states.append("Ended")

    def fail_next(
        self,
        status: int,
        times: int = 1,
        *,
        method: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` job-service requests (of ``method``, if given) with ``status``.

        The body is ``{"error": {"code": ..., "message": ...}}`` (``code`` defaults by status, e.g.
        ``TooManyRequests`` for 429, ``ServiceUnavailable`` for 503). ``retry_after`` (seconds) adds a
        ``Retry-After`` header (an integer when it is whole, else a decimal such as ``0.2``) and
        ``retry-after-ms``/``x-ms-retry-after-ms``. Injected failures come before authentication and
        change no state; the token endpoint is never affected.
        """
        if not 400 <= status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        if times < 1:
            raise ValueError("times must be at least 1")
        if retry_after is not None and (retry_after < 0 or not math.isfinite(retry_after)):
            raise ValueError("retry_after must be a finite number of seconds >= 0")
        chosen = code or _CODE_BY_STATUS.get(status, f"Http{status}")
        with self._lock:
            self._failures.append(
                _FailureRule(status, times, method.upper() if method else None, retry_after, chosen, message)
            )

    def expire_tokens(self) -> None:
        """Make every token issued so far rejected by the job service (401 ``ExpiredAuthenticationToken``)."""
        with self._lock:
            for token in self._tokens.values():
                token.revoked = True

    # -- job service ---------------------------------------------------------------------------------

    def _dispatch_jobs(
        self, method: str, path: str, query: dict[str, str], raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        malformed = False
        body: Any = None
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                body, malformed = raw.decode("utf-8", errors="replace"), True
        request = RecordedRequest(method=method, path=path, query=query, body=body, headers=headers)
        answer_headers = {"x-ms-request-id": str(uuid.uuid4())}
        with self._lock:
            self.requests.append(request)
            try:
                injected = self._take_failure(request)
                if injected is not None:
                    raise injected
                submitter = self._authenticate(request)
                self._check_api_version(request)
                status, payload = self._route(request, malformed, submitter)
                return status, answer_headers, payload
            except ApiError as err:
                return err.status, {**answer_headers, **err.headers}, err.body()
            except Exception as err:
                self.internal_errors.append(err)
                return 500, answer_headers, {"error": {"code": "InternalServerError", "message": type(err).__name__}}

    def _take_failure(self, request: RecordedRequest) -> ApiError | None:
        for rule in self._failures:
            if rule.remaining > 0 and (rule.method is None or rule.method == request.method):
                rule.remaining -= 1
                self._failures = [r for r in self._failures if r.remaining > 0]
                headers: dict[str, str] = {}
                if rule.retry_after is not None:
                    seconds = rule.retry_after
                    headers["Retry-After"] = str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"
                    headers["retry-after-ms"] = headers["x-ms-retry-after-ms"] = str(round(seconds * 1000))
                if rule.message is not None:
                    message = rule.message
                elif rule.status == 429:
                    message = "The request was throttled: too many requests to the job service. Retry later."
                elif rule.status >= 500:
                    message = "The job service is temporarily unavailable. Please try again later."
                else:
                    message = f"Injected failure {rule.status} for {request.method} {request.path}."
                return ApiError(rule.status, rule.code, message, headers)
        return None

    def _unauthorized(self, code: str, message: str) -> ApiError:
        challenge = f'Bearer authorization_uri="{self.authority}/{self.tenant_id}", error="invalid_token"'
        return ApiError(401, code, message, {"WWW-Authenticate": challenge})

    def _authenticate(self, request: RecordedRequest) -> str:
        """Check the bearer token; return the submitter it stands for."""
        authorization = request.header("Authorization")
        if authorization is None or not authorization.strip():
            raise self._unauthorized(
                "AuthenticationFailed", "The request has no Authorization header; expected 'Bearer <access token>'."
            )
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._unauthorized(
                "AuthenticationFailed", "The Authorization header is not of the form 'Bearer <access token>'."
            )
        if self.static_token is not None and secrets.compare_digest(token, self.static_token):
            return self.client_id
        record = self._tokens.get(token)
        if record is None:
            raise self._unauthorized("InvalidAuthenticationToken", "The access token is invalid.")
        if record.revoked or _now() >= record.expires_at:
            raise self._unauthorized(
                "ExpiredAuthenticationToken",
                "The access token has expired. Acquire a new access token and send the request again.",
            )
        if record.resource.rstrip("/") != DATALAKE_RESOURCE.rstrip("/"):
            raise self._unauthorized(
                "InvalidAuthenticationTokenAudience",
                f"The access token was issued for the wrong audience; the job service accepts tokens for "
                f"'{DATALAKE_RESOURCE}' (scope '{DATALAKE_SCOPE}').",
            )
        return record.client_id

    def _check_api_version(self, request: RecordedRequest) -> None:
        version = request.query.get("api-version")
        if version is None:
            raise ApiError(
                400,
                "MissingApiVersionParameter",
                f"The api-version query parameter (?api-version=) is required for all requests; "
                f"this service supports '{API_VERSION}'.",
            )
        if version != API_VERSION:
            raise ApiError(
                400,
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid; this service supports '{API_VERSION}'.",
            )

    def _route(self, request: RecordedRequest, malformed: bool, submitter: str) -> tuple[int, Any]:
        match = _JOB_PATH_RE.match(request.path)
        cancel = bool(match and match.group("cancel"))
        allowed = ("POST",) if cancel else ("GET", "PUT")
        if match is None or request.method not in allowed:
            raise ApiError(404, "NotFound", f"No resource matches '{request.method} {request.path}'.")
        raw_id = match.group("job")
        if not _GUID_RE.match(raw_id):
            raise ApiError(
                400,
                "InvalidJobId",
                f"The job identity {raw_id!r} is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx).",
            )
        job_id = raw_id.lower()
        if cancel:
            return self._cancel(job_id)
        if request.method == "PUT":
            if malformed:
                raise _invalid("The request body is not valid JSON.")
            return self._create(job_id, request.body, submitter)
        return self._get(job_id)

    def _lookup(self, job_id: str) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise ApiError(404, "JobNotFound", f"Job '{job_id}' was not found in account '{self.account}'.")
        return job

    def _create(self, job_id: str, body: Any, submitter: str) -> tuple[int, Any]:
        settings = _check_create(body)
        if job_id in self._jobs:
            raise ApiError(
                409,
                "JobIdAlreadyExists",
                f"A job with id '{job_id}' already exists in account '{self.account}'; "
                "each submission needs a new job id.",
            )
        script = self._scripts.popleft() if self._scripts else _Script(list(DEFAULT_JOB_SCRIPT), "Succeeded", [])
        job = _Job(
            job_id=job_id,
            payload=copy.deepcopy(body),
            submitter=submitter,
            states=script.states,
            scripted_result=script.result,
            scripted_errors=script.errors,
            submit_time=_now(),
            **settings,
        )
        self._enter_state(job, 0)
        self._jobs[job_id] = job
        self._submitted.append(copy.deepcopy(body))
        if self.on_submit is not None:
            # The test's stand-in for the U-SQL engine: it does the job's work before the job runs.
            self.on_submit(copy.deepcopy(body))
        return 200, self._view(job)

    def _get(self, job_id: str) -> tuple[int, Any]:
        job = self._lookup(job_id)
        if not job.cancelled and job.state != "Ended":
            index = min(job.gets // self.polls_per_state, len(job.states) - 1)
            while job.state_index < index:
                self._enter_state(job, job.state_index + 1)
        job.gets += 1
        return 200, self._view(job)

    def _cancel(self, job_id: str) -> tuple[int, Any]:
        job = self._lookup(job_id)
        self.cancelled.append(job_id)
        if not job.cancelled and job.state != "Ended":
            job.cancelled = True
            job.end_time = _now()
            if job.start_time is None:
                job.start_time = job.end_time
            job.audit.append(
                {
                    "newState": "Ended",
                    "timeStamp": _iso(job.end_time),
                    "requestedByUser": job.submitter,
                    "details": "Cancelled by user",
                }
            )
        return 200, None

    def _enter_state(self, job: _Job, index: int) -> None:
        job.state_index = index
        state = job.states[index]
        now = _now()
        if state in _STARTED_STATES and job.start_time is None:
            job.start_time = now
        if state == "Ended":
            job.end_time = now
            if job.start_time is None:
                job.start_time = now
        details = f"result:{job.scripted_result}" if state == "Ended" else ""
        job.audit.append(
            {"newState": state, "timeStamp": _iso(now), "requestedByUser": job.submitter, "details": details}
        )

    def _view(self, job: _Job) -> dict[str, Any]:
        submitted = datetime.fromtimestamp(job.submit_time, UTC)
        view: dict[str, Any] = {
            "jobId": job.job_id,
            "name": job.name,
            "type": "USql",
            "submitter": job.submitter,
            "degreeOfParallelism": job.degree_of_parallelism,
            "priority": job.priority,
            "submitTime": _iso(job.submit_time),
        }
        if job.start_time is not None:
            view["startTime"] = _iso(job.start_time)
        if job.end_time is not None:
            view["endTime"] = _iso(job.end_time)
        view.update(
            {
                "state": job.state,
                "result": job.result,
                "logFolder": (
                    f"adl://{self.account}.azuredatalakestore.net/system/jobservice/jobs/Usql/"
                    f"{submitted:%Y/%m/%d/%H/%M}/{job.job_id}/logs/"
                ),
                "errorMessage": copy.deepcopy(job.errors),
                "stateAuditRecords": copy.deepcopy(job.audit),
                "properties": copy.deepcopy(job.properties),
            }
        )
        if job.log_file_patterns is not None:
            view["logFilePatterns"] = list(job.log_file_patterns)
        if job.related is not None:
            view["related"] = copy.deepcopy(job.related)
        return view

    # -- AAD (Microsoft Entra) stand-in ----------------------------------------------------------------

    def _dispatch_aad(
        self, method: str, path: str, query: dict[str, str], raw: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        body: Any = None
        if method == "POST":
            body = {name: values[0] for name, values in parse_qs(raw.decode("utf-8", "replace")).items()}
        request = RecordedRequest(method=method, path=path, query=query, body=body, headers=headers)
        no_store = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        with self._lock:
            self.aad_requests.append(request)
            try:
                token_match = _TOKEN_PATH_RE.match(path)
                if token_match and method == "POST":
                    self.token_requests.append(request)
                    return 200, no_store, self._issue_token(token_match.group("tenant"), request)
                openid_match = _OPENID_PATH_RE.match(path)
                if openid_match and method == "GET":
                    return 200, {}, self._openid_configuration(openid_match.group("tenant"))
                if path == "/common/discovery/instance" and method == "GET":
                    return 200, {}, self._instance_discovery(query)
                raise _AadError(404, "invalid_request", 90027, f"No endpoint matches '{method} {path}'.")
            except _AadError as err:
                return err.status, no_store, err.body()
            except Exception as err:
                self.internal_errors.append(err)
                return 500, no_store, {"error": "server_error", "error_description": type(err).__name__}

    def _check_tenant(self, tenant: str) -> None:
        if tenant != self.tenant_id:
            raise _AadError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.",
            )

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        self._check_tenant(tenant)
        base = f"{self.authority}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "oid", "azp", "ver"],
            "tenant_region_scope": None,
            "cloud_instance_name": f"{self.host}:{self._aad_port}",
            "cloud_graph_host_name": "",
            "msgraph_host": "",
        }

    def _instance_discovery(self, query: dict[str, str]) -> dict[str, Any]:
        parts = [part for part in urlsplit(query.get("authorization_endpoint", "")).path.split("/") if part]
        tenant = parts[0] if parts else self.tenant_id
        netloc = f"{self.host}:{self._aad_port}"
        return {
            "tenant_discovery_endpoint": f"{self.authority}/{tenant}/v2.0/.well-known/openid-configuration",
            "api-version": "1.1",
            "metadata": [{"preferred_network": netloc, "preferred_cache": netloc, "aliases": [netloc]}],
        }

    def _issue_token(self, tenant: str, request: RecordedRequest) -> dict[str, Any]:
        self._check_tenant(tenant)
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise _AadError(
                400,
                "invalid_request",
                900144,
                "The request body must be form-encoded (application/x-www-form-urlencoded).",
            )
        form: dict[str, str] = dict(request.body or {})
        basic_id, basic_secret = self._basic_credentials(request)
        grant_type = form.get("grant_type")
        if not grant_type:
            raise _AadError(400, "invalid_request", 900144, "The request body must contain the parameter 'grant_type'.")
        if grant_type != "client_credentials":
            raise _AadError(
                400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant_type}'."
            )
        client_id = form.get("client_id") or basic_id
        if not client_id:
            raise _AadError(400, "invalid_request", 900144, "The request body must contain the parameter 'client_id'.")
        if client_id != self.client_id:
            raise _AadError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        secret = form.get("client_secret") or basic_secret
        if not secret:
            raise _AadError(
                401,
                "invalid_client",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        if not secrets.compare_digest(secret.encode(), self.client_secret.encode()):
            raise _AadError(
                401,
                "invalid_client",
                7000215,
                f"Invalid client secret provided. Ensure the secret being sent in the request is the client secret "
                f"value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope_text = form.get("scope")
        if not scope_text:
            raise _AadError(400, "invalid_request", 900144, "The request body must contain the parameter 'scope'.")
        scopes = [s for s in scope_text.split() if s not in _RESERVED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise _AadError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope_text} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        scope = scopes[0]
        token = f"adla-test-{secrets.token_urlsafe(32)}"
        now = _now()
        self._tokens[token] = _Token(
            client_id=client_id,
            scope=scope,
            resource=scope[: -len("/.default")],
            issued_at=now,
            expires_at=now + self.token_lifetime,
        )
        self.issued_tokens.append(token)
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": token,
        }

    @staticmethod
    def _basic_credentials(request: RecordedRequest) -> tuple[str | None, str | None]:
        authorization = request.header("Authorization") or ""
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic" or not value.strip():
            return None, None
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, _, password = decoded.partition(":")
        return user or None, password or None
