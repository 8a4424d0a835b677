"""Scrub secrets from text before it reaches a response or a log line."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlencode

# scheme://user:password@host -> scheme://user:***@host
_DSN_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?=@)")
# libpq keyword form: password=secret
_KW_PASSWORD = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")

MASK = "***"


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Return ``text`` with DSN passwords and every literal in ``secrets`` masked. The patterns run
    only where their anchor occurs (every log line passes here)."""
    if "://" in text:
        text = _DSN_PASSWORD.sub(lambda m: m.group("head") + MASK, text)
    if "password" in text.lower():
        text = _KW_PASSWORD.sub(lambda m: m.group(1) + MASK, text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            text = text.replace(secret, MASK)
    return text


def dsn_password(dsn: str) -> str:
    """The password embedded in a URL-form DSN, or '' when there is none."""
    m = _DSN_PASSWORD.search(dsn)
    return m.group("pw") if m else ""


def dsn_secrets(dsn: str) -> tuple[str, ...]:
    """The DSN's password as it stands in the URL and decoded (a password given in pieces is quoted
    into the URL, and an error message may show either form)."""
    raw = dsn_password(dsn)
    return tuple(dict.fromkeys(s for s in (raw, unquote(raw)) if s))


SHOWN_PARAMETERS = ("sslmode", "sslrootcert")  # a DSN's query keeps only these in logs


def safe_dsn(dsn: str) -> str:
    """A DSN fit for logs: password masked; of its query, only the TLS settings are kept (any
    other parameter may carry a secret)."""
    base, _, query = dsn.partition("?")
    shown = [(k, v) for k, v in parse_qsl(query) if k in SHOWN_PARAMETERS]
    return redact(base) + (f"?{urlencode(shown)}" if shown else "")
