"""Keep credentials out of messages: errors from storage SDKs can echo URLs with SAS signatures."""

from __future__ import annotations

import re
from collections.abc import Iterable

_PATTERNS = [
    # SAS query parameters: the signature is the secret, but hide the whole token's key fields.
    (re.compile(r"(?i)\b(sig|se|sp|sv|st|srt|ss|skoid|sktid|skt|ske|sks|skv)=[^&\s'\"]+"), r"\1=***"),
    (
        re.compile(r"(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|Password|Pwd)=[^;\s'\"]+"),
        r"\1=***",
    ),
    (re.compile(r"(?i)(Authorization['\"]?\s*[:=]\s*['\"]?)(Bearer|SharedKey)\s+[^\s'\"]+"), r"\1\2 ***"),
    # Credentials in a URL (a private package index in a pip requirement, a database URL).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@'\"]+:[^/\s@'\"]+@"), r"\1***@"),
]


def redact(text: object, secrets: Iterable[str | None] = ()) -> str:
    """Return ``str(text)`` with the given secrets and any recognisable credential replaced by ``***``."""
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, "***")
    for pattern, repl in _PATTERNS:
        out = pattern.sub(repl, out)
    return out
