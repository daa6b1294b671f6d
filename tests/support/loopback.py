"""What the loopback service stand-ins (Databricks, Data Lake Analytics) share: how a request is read and recorded."""

from __future__ import annotations

from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
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
