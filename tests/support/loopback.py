"""What the loopback service stand-ins (Databricks, Data Lake Analytics, Docker) share: how a request is read
and recorded, and (:class:`LoopbackServer`) how a stand-in is started and stopped."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl


@dataclass(frozen=True)
class RecordedRequest:
    """One request as a stand-in received it.

    :param method: ``"GET"``, ``"PUT"``, ``"POST"``, ...
    :param path: the URL path
    :param query: the query string, one value per name (the first one)
    :param body: the parsed body (JSON, or a form's fields), ``None`` when empty (the raw text when it
        cannot be parsed)
    :param headers: the headers with their names as sent (see :meth:`header` to look one up in any case)
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]

    def header(self, name: str) -> str | None:
        """The value of header ``name``, whatever the case it was sent in; ``None`` if absent."""
        wanted = name.lower()
        return next((value for key, value in self.headers.items() if key.lower() == wanted), None)

    @property
    def params(self) -> dict[str, Any]:
        """The request's arguments: the query string, plus a JSON object body (how ``aiohttp`` sends GETs)."""
        merged: dict[str, Any] = dict(self.body) if isinstance(self.body, dict) else {}
        merged.update(self.query)
        return merged


def read_body(handler: BaseHTTPRequestHandler) -> bytes:
    """The request body, whether sent with ``Content-Length`` or chunked."""
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int(handler.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length > 0 else b""


def parse_query(query: str) -> dict[str, str]:
    """A query string as one value per name (the first one), blanks kept."""
    out: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        out.setdefault(name, value)
    return out


class QuietHTTPServer(ThreadingHTTPServer):
    """A threaded server whose handlers reach their stand-in as ``self.server.owner``."""

    daemon_threads = True
    owner: Any

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up mid-answer is not the test's business


class LoopbackServer:
    """Serves :attr:`handler` on ``127.0.0.1`` from a daemon thread: a context manager, or :meth:`start` /
    :meth:`stop`. Subclasses set :attr:`handler` and call :meth:`_listen_on` from their ``__init__``.
    """

    handler: ClassVar[type[BaseHTTPRequestHandler]]
    #: The URL scheme of :attr:`url`.
    scheme: ClassVar[str] = "http"

    def _listen_on(self, port: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self._httpd: QuietHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Listen and serve from a daemon thread; return ``self``."""
        if self._httpd is not None:
            return self
        httpd = QuietHTTPServer((self.host, self.port), self.handler)
        httpd.owner = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        # A short poll interval so that stop() returns quickly (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{type(self).__name__}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening; the recorded state stays readable."""
        self._before_stop()
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _before_stop(self) -> None:
        """Release what waits on the stand-in (blocked long polls), before the server shuts down."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"
