"""Pytest plugin: a real Azure Blob Storage emulator (Azurite) for the whole test session.

``azurite`` starts ``node_modules/.bin/azurite-blob`` on a free port once per session;
``blob_container`` gives each test a fresh container in it. ``azurite_two_accounts`` is a second
instance serving two storage accounts, for cross-account copies and for tests that stop it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
#: Azurite's fixed development account and its publicly documented key.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
#: A second account for cross-account tests; its key is made up (Azurite takes any base64 key).
SECOND_ACCOUNT_NAME = "amlsecondacct"
SECOND_ACCOUNT_KEY = base64.b64encode(b"aml-airflow-provider: second Azurite test account key, not secret").decode()
START_TIMEOUT = 30.0
#: Printed once Azurite has saved its metadata and stopped serving.
_CLOSED_MESSAGE = "Azurite Blob service successfully closed"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class Azurite:
    """A running Azurite blob service.

    :param binary: the ``azurite-blob`` executable
    :param workdir: folder for its data (``location``) and its output log
    :param port: TCP port on 127.0.0.1; kept across :meth:`stop`/:meth:`start`
    :param accounts: account name -> key served instead of the default account alone (Azurite's
        ``AZURITE_ACCOUNTS``); the first one is :attr:`account_name`. ``None``: Azurite's default.
    """

    account_name = ACCOUNT_NAME
    account_key = ACCOUNT_KEY

    def __init__(self, binary: Path, workdir: Path, port: int, accounts: Mapping[str, str] | None = None) -> None:
        self.binary = binary
        self.location = workdir / "data"
        self.log_path = workdir / "azurite.log"
        self.port = port
        self.accounts = dict(accounts) if accounts else {ACCOUNT_NAME: ACCOUNT_KEY}
        self._custom_accounts = bool(accounts)
        if accounts:
            self.account_name, self.account_key = next(iter(self.accounts.items()))
        self._proc: subprocess.Popen[bytes] | None = None

    def account_url_of(self, account: str) -> str:
        """The blob endpoint of one of :attr:`accounts`."""
        return f"http://127.0.0.1:{self.port}/{account}"

    def connection_string_of(self, account: str) -> str:
        """A connection string (with the account key) for one of :attr:`accounts`."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={account};"
            f"AccountKey={self.accounts[account]};BlobEndpoint={self.account_url_of(account)};"
        )

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.account_name}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account_name};"
            f"AccountKey={self.account_key};BlobEndpoint={self.account_url};"
        )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace").strip() or "(no output)"
        except OSError:
            return "(no output)"

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the emulator (again) on the same port and data folder; return once the port answers."""
        if self.running:
            return
        self.location.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(self.binary),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--location",
            str(self.location),
            "--skipApiVersionCheck",
            "--silent",
        ]
        # Output goes to a file, not a pipe: nobody reads a pipe during the session, and a full
        # pipe would block the emulator.
        env = None
        if self._custom_accounts:
            env = {**os.environ, "AZURITE_ACCOUNTS": ";".join(f"{n}:{k}" for n, k in self.accounts.items())}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while not _port_answers(self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                pytest.fail(
                    f"Azurite exited with code {code} before listening on port {self.port}. "
                    f"Its output:\n{self._output()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"Azurite did not listen on port {self.port} within {timeout:.0f} s. Its output:\n{self._output()}",
                    pytrace=False,
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the emulator (its data stays in :attr:`location`)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        closed_before = self._output().count(_CLOSED_MESSAGE)
        proc.terminate()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            # Node keeps running while clients hold keep-alive connections, even after Azurite has
            # closed and saved its data: that message is as good as the exit.
            if self._output().count(_CLOSED_MESSAGE) > closed_before:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, downtime: float = 0.0) -> None:
        """Stop the emulator, stay down for ``downtime`` seconds, and start it again (same port and data)."""
        self.stop()
        time.sleep(downtime)
        self.start()


@contextlib.contextmanager
def running_azurite(workdir: Path, accounts: Mapping[str, str] | None = None) -> Iterator[Azurite]:
    """An Azurite on a free port keeping its data in ``workdir``, stopped on exit.

    :param accounts: the storage accounts it serves (see :class:`Azurite`); ``None``: the default one
    """
    if not AZURITE_BIN.exists():
        pytest.fail(
            f"Azurite is not installed ({AZURITE_BIN} is missing): run `make test` (it runs npm install).",
            pytrace=False,
        )
    server = Azurite(AZURITE_BIN, workdir, _free_port(), accounts)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A running Azurite blob service for the whole session."""
    with running_azurite(tmp_path_factory.mktemp("azurite")) as server:
        yield server


@pytest.fixture
def blob_container(azurite: Azurite) -> Iterator[str]:
    """A new, empty container in Azurite; its name (lowercase, 3-63 characters)."""
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.blob import BlobServiceClient

    name = f"test-{uuid.uuid4().hex}"
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    service.create_container(name)
    yield name
    if azurite.running:  # a fault test may have left the emulator stopped
        with contextlib.suppress(ResourceNotFoundError):
            service.delete_container(name)


@pytest.fixture(scope="session")
def azurite_two_accounts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """A second Azurite instance serving ``devstoreaccount1`` and :data:`SECOND_ACCOUNT_NAME`.

    Azurite copies blobs server-side only within one instance, so cross-account copies need both
    accounts here. Tests may stop and restart it without disturbing the session's ``azurite``.
    """
    accounts = {ACCOUNT_NAME: ACCOUNT_KEY, SECOND_ACCOUNT_NAME: SECOND_ACCOUNT_KEY}
    with running_azurite(tmp_path_factory.mktemp("azurite-two-accounts"), accounts) as server:
        yield server
