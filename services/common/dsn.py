"""A Postgres URL given whole (``<PREFIX>URL``-style variable) or in pieces: host, port, database
name, user and password as separate variables, so that a platform can inject the password alone
from a secret store (ECS ``secrets`` can pick one JSON key of a secret) and the rest as plain
settings.

TLS is two more settings that serve the whole URL and the pieces alike: ``<prefix>SSLMODE``
(libpq's sslmode) and ``<prefix>SSLROOTCERT`` (the CA bundle a verifying mode checks the server
against: the images carry Amazon RDS's at /etc/ssl/certs/rds-global-bundle.pem). They become the URL's query, which
libpq reads, so psycopg, psycopg2 and SQLAlchemy all connect the same way."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

PIECES = ("HOST", "PORT", "NAME", "USER", "PASSWORD")
REQUIRED = ("HOST", "NAME", "USER", "PASSWORD")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
VERIFYING = ("verify-ca", "verify-full")


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


def tls(env: Mapping[str, str], prefix: str) -> dict[str, str]:
    """``{"sslmode": ..., "sslrootcert": ...}`` from ``<prefix>SSLMODE`` and ``<prefix>SSLROOTCERT``
    (only what is set); DsnError naming the variable when the mode is unknown or a verifying mode
    has no bundle. Whether the bundle is there is ``check_bundle``'s to say, where the service runs
    (a configuration check may run elsewhere: on the host, for a container's settings)."""
    mode, root = env.get(prefix + "SSLMODE", ""), env.get(prefix + "SSLROOTCERT", "")
    if mode and mode not in SSLMODES:
        raise DsnError(f"{prefix}SSLMODE: expected one of {', '.join(SSLMODES)}, got {mode!r}")
    if mode in VERIFYING and not root:
        raise DsnError(f"{prefix}SSLROOTCERT: required with {prefix}SSLMODE={mode} (the CA bundle to verify against)")
    return {k: v for k, v in (("sslmode", mode), ("sslrootcert", root)) if v}


def check_bundle(root: str | None, variable: str) -> None:
    """At start-up: the CA bundle ``root`` (if any) is a readable file of PEM certificates, or a
    DsnError naming ``variable`` (libpq would only say so at every connection attempt)."""
    if not root:
        return
    try:
        pem = Path(root).read_bytes()
    except OSError as exc:
        raise DsnError(f"{variable}: expected a readable CA bundle, got {root!r} ({exc.strerror})") from None
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise DsnError(f"{variable}: expected PEM certificates in {root!r}, found none")


def bundle_of(url: str) -> str | None:
    """The ``sslrootcert`` a Postgres URL names, if any."""
    return dict(parse_qsl(urlsplit(url).query)).get("sslrootcert")


def with_tls(url: str, settings: Mapping[str, str], what: str) -> str:
    """``url`` with the TLS ``settings`` in its query; DsnError when the URL already says otherwise."""
    if not settings:
        return url
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    clash = [k for k, v in settings.items() if k in query and query[k] != v]
    if clash:
        raise DsnError(f"{what}: its {', '.join(clash)} differs from the TLS settings given beside it")
    # %20, not +: libpq decodes only %XX in a URL's query, so a space must not become a plus
    return urlunsplit(parts._replace(query=urlencode(query | dict(settings), quote_via=quote)))


def database_url(env: Mapping[str, str], prefix: str, whole: str) -> str | None:
    """The service's Postgres URL (whole, or from its pieces) with its TLS settings; None when
    neither the URL nor any piece is set."""
    url = from_pieces(env, prefix, whole) or env.get(whole) or None
    settings = tls(env, prefix)
    if url is None:
        if settings:
            raise DsnError(f"{', '.join(prefix + k.upper() for k in settings)}: given without {whole} or its pieces")
        return None
    return with_tls(url, settings, whole)
