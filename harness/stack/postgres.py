"""Postgres: one server, one database per service (``StackConfig.databases``), password auth, TLS
only (as RDS with ``rds.force_ssl``): its certificate comes from the stack's test authority and
names every address the services use for it, so that they connect with ``verify-full``.

Docker runs ``services/postgres/Dockerfile`` (its entrypoint creates the role and databases);
the local runtime runs the server binaries from ``initdb``/``postgres`` in a temp dir, as an
unprivileged user when the harness runs as root (Postgres refuses root)."""

from __future__ import annotations

import glob
import os
import pwd
import shlex
import shutil
import signal
from pathlib import Path

import psycopg

from harness.errors import DependencyMissing
from harness.stack.config import StackConfig
from harness.stack.spec import Launch, Links, Readiness, ServiceSpec

PG_SEARCH = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)


def find_pg_bin() -> Path:
    """The directory holding initdb and postgres: PATH first, then the usual distribution places."""
    candidates = []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).resolve().parent)
    for pattern in PG_SEARCH:
        candidates += sorted((Path(p) for p in glob.glob(pattern)), reverse=True)
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise DependencyMissing(
        "PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin",
        "none found",
        "install them: apt-get install postgresql (Debian/Ubuntu), "
        "dnf install postgresql-server (Fedora), brew install postgresql@15 (macOS)",
    )


def unprivileged_user() -> str | None:
    """Postgres refuses to run as root; pick an unprivileged account when we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise DependencyMissing(
        "an unprivileged user to run Postgres as (running as root)",
        "no postgres or nobody",
        "create one: useradd --system postgres",
    )


def ready(dsn: str, timeout: float = 2.0) -> str:
    """Readiness: the server accepts a login and answers a query."""
    with psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True) as conn:
        row = conn.execute("SELECT version()").fetchone()
        assert row is not None  # SELECT without FROM always returns its row
        return str(row[0])


def ensure_databases(admin_dsn: str, names: tuple[str, ...]) -> None:
    """Create the databases that do not exist yet (idempotent; the docker image makes them itself)."""
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
        have = {r[0] for r in conn.execute("SELECT datname FROM pg_database").fetchall()}
        for name in names:
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')


NAMES = ("postgres", "localhost", "127.0.0.1")  # its name on a Docker network, and loopback
# what a local server admits: TLS only, from loopback (the local socket is the harness's own)
LOCAL_HBA = """local all all trust
hostssl all all 127.0.0.1/32 scram-sha-256
hostssl all all ::1/128 scram-sha-256
"""


# where the api and MLflow images carry Amazon RDS's CA bundle, and where a container runtime puts
# the stack's own CA instead: the services verify the stand-in as they verify RDS
IMAGE_BUNDLE = "/etc/ssl/certs/rds-global-bundle.pem"


def client_tls(prefix: str, bundle: str = IMAGE_BUNDLE) -> dict[str, str]:
    """A service's TLS settings for its database (``<prefix>SSLMODE``, ``<prefix>SSLROOTCERT``)."""
    return {f"{prefix}SSLMODE": "verify-full", f"{prefix}SSLROOTCERT": bundle}


def local_bundle(config: StackConfig, workdir: Path) -> str:
    """The stack's CA written into a local service's ``workdir``: its ``SSLROOTCERT``."""
    return config.authority.write(workdir)


class Postgres(ServiceSpec):
    name = "postgres"
    port = 5432
    scheme = "postgresql"
    budget = "postgres_ready"

    def environment(self, config: StackConfig, links: Links, reached_as: tuple[str, ...] = ()) -> dict[str, str]:
        cert, key = config.authority.issue((*NAMES, *reached_as))
        return {
            "POSTGRES_USER": config.user,
            "POSTGRES_PASSWORD": config.password,
            "POSTGRES_DBS": ",".join(config.databases),
            "POSTGRES_TLS_CERT": cert.decode(),
            "POSTGRES_TLS_KEY": key.decode(),
        }

    def url(self, config: StackConfig, host: str, port: int) -> str:
        return f"postgresql://{config.user}:{config.password}@{host}:{port}"

    def local(self, config: StackConfig, links: Links, port: int, workdir: Path) -> Launch:
        """initdb into ``workdir`` first (as the unprivileged user when root), then the server."""
        pg_bin, user = find_pg_bin(), unprivileged_user()
        data, pwfile = workdir / "data", workdir / "pwfile"
        pwfile.write_text(config.password + "\n")
        cert, key = config.authority.issue(NAMES)
        (workdir / "server.crt").write_bytes(cert)
        (workdir / "server.key").touch(mode=0o600)
        (workdir / "server.key").write_bytes(key)
        (workdir / "pg_hba.conf").write_text(LOCAL_HBA)
        env = {"PATH": f"{pg_bin}:{os.environ.get('PATH', '')}", "LANG": "C.UTF-8", "TMPDIR": str(workdir)}
        initdb = shlex.join(
            [
                str(pg_bin / "initdb"),
                "-D",
                str(data),
                "-U",
                config.user,
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        setup = ["sh", "-c", f"{initdb}; rc=$?; rm -f {shlex.quote(str(pwfile))}; exit $rc"]
        argv = [
            str(pg_bin / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=200",
            "-c",
            f"hba_file={workdir / 'pg_hba.conf'}",
            "-c",
            "ssl=on",
            "-c",
            f"ssl_cert_file={workdir / 'server.crt'}",
            "-c",
            f"ssl_key_file={workdir / 'server.key'}",
        ]
        # SIGINT: "fast" shutdown; SIGTERM is "smart" and waits for every client to leave
        return Launch(argv, env, user=user, stop_signal=signal.SIGINT, setup=(setup,))

    def readiness(self, url: str) -> Readiness:
        return Readiness(lambda: ready(f"{url}/postgres"), bool, "postgres to accept a query")

    def prepare(self, url: str, config: StackConfig) -> None:
        ensure_databases(f"{url}/postgres", config.databases)


POSTGRES = Postgres()
