"""The database bootstrap against a real Postgres: each service gets its own role and database,
the role's password follows its secret, a second run changes nothing else, and one service's
role cannot enter the other's database."""

import os
import subprocess
import sys

import psycopg
import pytest

from harness.certificates import Authority
from harness.paths import project
from pytest_harness.stack import local_postgres

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    with local_postgres() as (svc, _, config):
        yield svc, config


@pytest.fixture(scope="module")
def bundles(server, tmp_path_factory):
    """The server's CA, and another CA's certificate (a server it did not issue)."""
    _, config = server
    where = tmp_path_factory.mktemp("bundles")
    (where / "ours.pem").write_bytes(config.authority.pem)
    (where / "theirs.pem").write_bytes(Authority().pem)
    return where


def base_env(svc, config, timeout: int = 10) -> dict[str, str]:
    """What every task's dbinit is given: the server and its master credentials."""
    return {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": project().pythonpath,
        "DBINIT_HOST": "127.0.0.1",
        "DBINIT_PORT": str(svc.host_port),
        "DBINIT_MASTER_USER": config.user,
        "DBINIT_MASTER_PASSWORD": config.password,
        "DBINIT_TIMEOUT": str(timeout),
    }


def dbinit(svc, config, *args, **env):
    base = base_env(svc, config)
    return subprocess.run(
        [sys.executable, "-m", "services.common.dbinit", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def login(svc, database, user, password):
    with psycopg.connect(
        host="127.0.0.1", port=svc.host_port, dbname=database, user=user, password=password, connect_timeout=5
    ) as conn:
        return conn.execute("SELECT current_user").fetchone()[0]


def test_each_service_gets_its_own_role_and_database_and_reruns_are_safe(server):
    svc, config = server
    first = dbinit(svc, config, DBINIT_NAME="svc_a", DBINIT_USER="svc_a", DBINIT_PASSWORD="first-pw")
    assert first.returncode == 0, first.stderr + first.stdout
    assert '"role_created": true' in first.stdout and "first-pw" not in first.stdout + first.stderr
    assert login(svc, "svc_a", "svc_a", "first-pw") == "svc_a"
    assert dbinit(svc, config, DBINIT_NAME="svc_b", DBINIT_USER="svc_b", DBINIT_PASSWORD="b-pw").returncode == 0
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        login(svc, "svc_a", "svc_b", "b-pw")
    # the secret was rotated: a rerun sets the new password, creates nothing
    again = dbinit(svc, config, DBINIT_NAME="svc_a", DBINIT_USER="svc_a", DBINIT_PASSWORD="second-pw")
    assert again.returncode == 0, again.stderr
    assert '"role_created": false, "database": "svc_a", "database_created": false' in again.stdout
    assert login(svc, "svc_a", "svc_a", "second-pw") == "svc_a"
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        login(svc, "svc_a", "svc_a", "first-pw")


def test_a_wrong_environment_is_named_and_never_echoes_a_password(server):
    svc, config = server
    result = dbinit(svc, config, "--check-config", DBINIT_NAME="Bad-Name", DBINIT_USER=config.user)
    assert result.returncode == 2
    assert "DBINIT_PASSWORD: required but not set" in result.stderr
    assert "DBINIT_NAME: expected a lower-case Postgres identifier" in result.stderr
    assert "DBINIT_USER: expected a role of the service's own" in result.stderr
    assert config.password not in result.stderr + result.stdout


def test_an_unreachable_server_fails_within_its_timeout(server):
    svc, config = server
    result = dbinit(
        svc, config, DBINIT_PORT="1", DBINIT_TIMEOUT="1", DBINIT_NAME="x", DBINIT_USER="x", DBINIT_PASSWORD="x-pw"
    )
    assert result.returncode == 1 and "postgres: not reachable after" in result.stdout


def test_the_bootstrap_verifies_the_server_and_the_server_refuses_plain_connections(server, bundles):
    """The master password and the service's password travel only over TLS to a server whose
    certificate chains to the bundle and names the host connected to (libpq's verify-full)."""
    svc, config = server
    names = {"DBINIT_NAME": "svc_tls", "DBINIT_USER": "svc_tls", "DBINIT_PASSWORD": "tls-pw"}
    ok = dbinit(svc, config, DBINIT_SSLMODE="verify-full", DBINIT_SSLROOTCERT=str(bundles / "ours.pem"), **names)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    stranger = dbinit(
        svc,
        config,
        DBINIT_SSLMODE="verify-full",
        DBINIT_SSLROOTCERT=str(bundles / "theirs.pem"),
        DBINIT_TIMEOUT="1",
        **names,
    )
    assert stranger.returncode == 1 and "certificate verify failed" in stranger.stdout, stranger.stdout
    # a name the certificate does not carry: the CA is right, the host is not one it vouches for
    # (libpq connects to PGHOSTADDR and verifies the certificate against the host name given)
    wrong_name = dbinit(
        svc,
        config,
        DBINIT_HOST="db.elsewhere.internal",
        PGHOSTADDR="127.0.0.1",
        DBINIT_SSLMODE="verify-full",
        DBINIT_SSLROOTCERT=str(bundles / "ours.pem"),
        DBINIT_TIMEOUT="1",
        **names,
    )
    assert wrong_name.returncode == 1, wrong_name.stdout
    assert 'does not match host name \\"db.elsewhere.internal\\"' in wrong_name.stdout, wrong_name.stdout
    plain = dbinit(svc, config, DBINIT_SSLMODE="disable", DBINIT_TIMEOUT="1", **names)
    assert plain.returncode == 1 and "no encryption" in plain.stdout, plain.stdout


def test_a_missing_bundle_is_named_at_the_start(server):
    svc, config = server
    result = dbinit(
        svc,
        config,
        DBINIT_SSLMODE="verify-full",
        DBINIT_SSLROOTCERT="/nowhere/ca.pem",
        DBINIT_NAME="x",
        DBINIT_USER="x",
        DBINIT_PASSWORD="x-pw",
    )
    assert result.returncode == 2 and "DBINIT_SSLROOTCERT: expected a readable CA bundle" in result.stderr
    assert (
        dbinit(
            svc,
            config,
            "--check-config",
            DBINIT_SSLMODE="verify-full",
            DBINIT_NAME="x",
            DBINIT_USER="x",
            DBINIT_PASSWORD="x-pw",
        ).stderr.count("DBINIT_SSLROOTCERT: required with DBINIT_SSLMODE=verify-full")
        == 1
    )


ROUNDS, AT_ONCE = 3, 6  # as ECS starts a service's tasks: all of them, each with its dbinit


def _all_at_once(svc, config, name: str, password: str) -> list[subprocess.CompletedProcess]:
    env = {"DBINIT_NAME": name, "DBINIT_USER": name, "DBINIT_PASSWORD": password}
    base = base_env(svc, config, timeout=20)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.common.dbinit"],
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(AT_ONCE)
    ]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=60)
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("statements", ["none", "all"])
def test_dbinits_started_together_all_succeed_and_never_log_the_password(server, statements):
    """The planned tasks of a service start together, each with its dbinit. Every one exits 0, one
    role and one database result, and the password is never in the server's log: not in a failed
    statement (logged whole at the default log_min_error_statement = error), and not in a logged
    statement (log_statement = all), because only a SCRAM verifier computed in the client is sent."""
    svc, config = server
    admin = f"postgresql://{config.user}:{config.password}@127.0.0.1:{svc.host_port}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET log_statement = '{statements}'")
        conn.execute("SELECT pg_reload_conf()")
    try:
        for i in range(ROUNDS):
            name, password = f"race_{statements}_{i}", f"pw-race-{statements}-{i}-s3cret"
            results = _all_at_once(svc, config, name, password)
            assert [r.returncode for r in results] == [0] * AT_ONCE, [
                r.stdout[-400:] + r.stderr[-400:] for r in results
            ]
            with psycopg.connect(admin, autocommit=True) as conn:
                roles = conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = %s", (name,)).fetchone()[0]
                dbs = conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (name,)).fetchone()[0]
                verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()[0]
            assert (roles, dbs) == (1, 1)
            assert verifier.startswith("SCRAM-SHA-256$")
            assert login(svc, name, name, password) == name
            assert password not in svc.log_path.read_text(errors="replace"), f"round {i}: the password is in the log"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM RESET log_statement")
            conn.execute("SELECT pg_reload_conf()")


SCHEMA_AT_ONCE = 4
CREATE_SCHEMA = (
    "import sys; from services.mlflow.entrypoint import prepare_schema; print(prepare_schema(sys.argv[1], 60))"
)


@pytest.mark.parametrize("round_", [1, 2])
def test_mlflow_tasks_started_together_create_its_tables_once(server, round_):
    """The planned MLflow tasks start together on a fresh database; each entrypoint creates MLflow's
    tables under the schema lock unless another already did: all exit 0, one creates them, and the
    schema is MLflow's head revision. (Without the lock, prod's two MLflow tasks, rehearsed
    together, failed one with ``duplicate key ... alembic_version``.)"""
    svc, config = server
    admin = f"postgresql://{config.user}:{config.password}@127.0.0.1:{svc.host_port}"
    name = f"mlflow_fresh_{round_}"
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": project().pythonpath}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE_SCHEMA, f"{admin}/{name}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(SCHEMA_AT_ONCE)
    ]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    assert [code for _, code in results] == [0] * SCHEMA_AT_ONCE, [err[-600:] for (_, err), _ in results]
    assert sorted(out.strip().splitlines()[-1] for (out, _), _ in results) == ["False"] * (SCHEMA_AT_ONCE - 1) + [
        "True"
    ]
    from mlflow.store.db.utils import _get_latest_schema_revision

    with psycopg.connect(f"{admin}/{name}") as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert version == _get_latest_schema_revision()
