"""A Postgres URL given whole (``<PREFIX>URL``-style variable) or in pieces: host, port, database
name, user and password as separate variables, so that a platform can inject the password alone
from a secret store (ECS ``secrets`` can pick one JSON key of a secret) and the rest as plain
settings."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

PIECES = ("HOST", "PORT", "NAME", "USER", "PASSWORD")
REQUIRED = ("HOST", "NAME", "USER", "PASSWORD")


class DsnError(ValueError):
    """The pieces are incomplete or malformed, or given beside a whole URL; names the variables."""


def from_pieces(env: Mapping[str, str], prefix: str, whole: str) -> str | None:
    """``postgresql://USER:PASSWORD@HOST:PORT/NAME`` from ``<prefix>HOST`` ... ``<prefix>PASSWORD``;
    None when no piece is set (the whole URL in ``whole`` is then the service's to require)."""
    given = {p: env[prefix + p] for p in PIECES if env.get(prefix + p)}
    if not given:
        return None
    if env.get(whole):
        raise DsnError(f"{whole} and {', '.join(prefix + p for p in given)}: expected the URL or its pieces, not both")
    missing = [prefix + p for p in REQUIRED if p not in given]
    if missing:
        raise DsnError(
            f"{', '.join(missing)}: required with {', '.join(prefix + p for p in given)} (or give {whole} instead)"
        )
    port = given.get("PORT", "5432")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise DsnError(f"{prefix}PORT: expected a port number, got {port!r}")
    return (
        f"postgresql://{quote(given['USER'], safe='')}:{quote(given['PASSWORD'], safe='')}"
        f"@{given['HOST']}:{port}/{quote(given['NAME'], safe='')}"
    )
