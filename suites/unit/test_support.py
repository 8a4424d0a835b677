"""Redaction, the entrypoints' bounded dependency wait, MLflow's configuration, the drain."""

import os
import signal

import pytest
import uvicorn

from harness.wait import ManualClock
from services.api.health import HealthService
from services.api.server import DrainingServer
from services.common.redact import dsn_password, redact, safe_dsn
from services.common.startup import DependencyTimeout, retry_until_ready
from services.mlflow.entrypoint import ConfigError, build_command, child_env, resolved

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text,expected",
    [
        ("postgresql://app:pw123@db:5432/api", "postgresql://app:***@db:5432/api"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("host=db password=pw123 user=app", "host=db password=*** user=app"),
        ("no secret here", "no secret here"),
    ],
)
def test_redact(text, expected):
    assert redact(text) == expected


def test_redact_literal_secrets_and_helpers():
    assert redact("error: pw123 rejected", ("pw123",)) == "error: *** rejected"
    assert dsn_password("postgresql://app:pw123@db/api") == "pw123"
    assert safe_dsn("postgresql://app:pw123@db/api?password=pw123") == "postgresql://app:***@db/api"
    # the TLS settings stay readable in logs and in --check-config; any other parameter goes
    assert (
        safe_dsn("postgresql://app:pw123@db/api?sslmode=verify-full&options=-c+x%3Dpw123&sslrootcert=/ca.pem")
        == "postgresql://app:***@db/api?sslmode=verify-full&sslrootcert=%2Fca.pem"
    )


def test_retry_until_ready_backs_off_and_logs():
    clock, seen = ManualClock(), []
    attempts = iter([ConnectionRefusedError("refused")] * 3 + ["up"])

    def probe():
        value = next(attempts)
        if isinstance(value, Exception):
            raise value
        return value

    assert (
        retry_until_ready(
            probe, what="postgres", timeout=10, log=lambda m, f: seen.append((m, f)), clock=clock, pause=clock.pause
        )
        == "up"
    )
    assert [f["next_retry_s"] for m, f in seen if m == "waiting for dependency"] == [0.2, 0.4, 0.8]
    assert seen[-1][0] == "dependency ready"


def test_retry_until_ready_gives_up_within_budget_with_last_error():
    clock = ManualClock()

    def probe():
        raise ConnectionRefusedError("connection refused")

    with pytest.raises(
        DependencyTimeout,
        match="postgres: not reachable after .* last error: ConnectionRefusedError: connection refused",
    ):
        retry_until_ready(probe, what="postgres", timeout=5, log=lambda m, f: None, clock=clock, pause=clock.pause)
    assert clock.now <= 5


ENV = {"MLFLOW_BACKEND_STORE_URI": "postgresql://app:pw@postgres:5432/mlflow"}


def test_mlflow_command_has_prefix_workers_and_allowed_hosts():
    argv = build_command(ENV)
    assert argv[argv.index("--static-prefix") + 1] == "/mlflow"
    assert argv[argv.index("--workers") + 1] == "1"
    hosts = argv[argv.index("--allowed-hosts") + 1].split(",")
    assert {"mlflow", "mlflow:*", "127.0.0.1:*"} <= set(hosts)
    assert child_env(ENV)["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


def test_mlflow_starts_in_the_entrypoints_process_with_its_environment_set_before_mlflow_loads(monkeypatch):
    """A new interpreter (exec) would import MLflow a second time: about 1.5 CPU-seconds of every
    start. The server runs in the entrypoint's process, its settings in place before MLflow loads."""
    from services.mlflow import entrypoint, serve

    seen = {}
    monkeypatch.setattr(os, "environ", dict(ENV))  # what the entrypoint sets stays in this test

    def execve(*args):
        raise AssertionError(f"exec'd {args[:2]}")

    def prepare_schema(uri, timeout):
        seen["env at schema"] = dict(os.environ)
        return True

    def main(argv):
        seen["argv"] = argv
        raise SystemExit(3)

    monkeypatch.setattr(os, "execve", execve)
    monkeypatch.setattr(entrypoint, "wait_for_postgres", lambda uri, timeout: None)
    monkeypatch.setattr(entrypoint, "prepare_schema", prepare_schema)
    monkeypatch.setattr(serve, "main", main)
    assert entrypoint.main([]) == 3  # the server's exit status
    assert seen["argv"] == build_command(ENV)[3:]
    assert seen["env at schema"]["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert seen["env at schema"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"


@pytest.mark.parametrize(
    "env,message",
    [
        ({}, "MLFLOW_BACKEND_STORE_URI: required but not set"),
        ({"MLFLOW_BACKEND_STORE_URI": "mysql://u:p@h/db"}, "MLFLOW_BACKEND_STORE_URI: expected one of"),
        ({**ENV, "MLFLOW_STATIC_PREFIX": "/mlflow/"}, "MLFLOW_STATIC_PREFIX: expected a path"),
        ({**ENV, "MLFLOW_PORT": "x"}, "MLFLOW_PORT: expected an integer"),
        ({**ENV, "MLFLOW_WORKERS": "0"}, "MLFLOW_WORKERS: expected a value between 1 and 16"),
        ({**ENV, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "maybe"}, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"),
        (
            {**ENV, "MLFLOW_ARTIFACTS_DESTINATION": "gs://bucket"},
            "MLFLOW_ARTIFACTS_DESTINATION: expected a path or an s3",
        ),
    ],
)
def test_mlflow_bad_configuration_is_named(env, message):
    with pytest.raises(ConfigError, match=message):
        build_command(env)


def test_mlflow_database_in_pieces_becomes_the_backend_uri():
    pieces = {
        "MLFLOW_DATABASE_HOST": "db",
        "MLFLOW_DATABASE_NAME": "mlflow",
        "MLFLOW_DATABASE_USER": "mlflow",
        "MLFLOW_DATABASE_PASSWORD": "s3cr#t",
    }
    assert resolved(pieces)["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow:s3cr%23t@db:5432/mlflow"
    assert resolved(ENV) == ENV
    with pytest.raises(ConfigError, match="MLFLOW_DATABASE_PASSWORD: required with MLFLOW_DATABASE_HOST"):
        resolved({k: v for k, v in pieces.items() if k != "MLFLOW_DATABASE_PASSWORD"})
    with pytest.raises(ConfigError, match="expected the URL or its pieces, not both"):
        resolved({**ENV, **pieces})


def test_mlflow_artifacts_in_s3_need_boto3(monkeypatch):
    import importlib.util

    argv = build_command({**ENV, "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/artifacts"})
    assert argv[argv.index("--artifacts-destination") + 1] == "s3://bucket/artifacts"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "boto3" else real(name))
    with pytest.raises(ConfigError, match="s3:// needs boto3"):
        build_command({**ENV, "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/artifacts"})


def test_mlflow_driver_must_be_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "psycopg2" else real(name))
    with pytest.raises(ConfigError, match="needs the psycopg2 driver"):
        build_command({"MLFLOW_BACKEND_STORE_URI": "postgresql+psycopg2://u:p@h/db"})


def test_first_signal_drains_then_second_exits():
    health = HealthService((), ttl=1)
    server = DrainingServer(uvicorn.Config(app=None), health, drain_seconds=30)
    server.handle_exit(signal.SIGTERM, None)
    assert health.draining and not server.should_exit
    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit


def test_drain_ends_at_its_deadline():
    import asyncio

    health = HealthService((), ttl=1)
    server = DrainingServer(uvicorn.Config(app=None), health, drain_seconds=0)
    server.handle_exit(signal.SIGTERM, None)
    assert asyncio.run(server.on_tick(1)) is True


ODD_FIELDS = {"health": "warn", "checks": {"postgres": {"status": "fail", "output": 'é "x"'}}, "run_id": "r-1"}


@pytest.mark.parametrize("extra", [{}, ODD_FIELDS])
def test_the_fast_request_line_says_what_the_generic_line_says(tmp_path, extra):
    """jsonlog.request_line assembles the per-request line from pre-escaped pieces (and writes it
    once per event-loop iteration); it must be the generic line, key for key, secrets masked."""
    import json
    import logging

    from services.common import jsonlog

    path = tmp_path / "log"
    with path.open("w") as stream:
        jsonlog.configure("api", "INFO", ("hunter22",), stream=stream)
        logger = logging.getLogger("api")
        odd = '/runs/"é\\hunter22'
        jsonlog.request_line(logger, "rid-1", "GET", odd, 200, 0.12, extra)
        token = jsonlog.request_id.set("rid-1")
        jsonlog.log(logger, "request", method="GET", path=odd, status=200, duration_ms=0.12, **extra)
        jsonlog.request_id.reset(token)
    jsonlog.configure("api", "INFO")
    fast, generic = (json.loads(line) for line in path.read_text().splitlines())
    assert fast.pop("ts") and generic.pop("ts")
    assert fast == generic and list(fast) == list(generic)
    assert "hunter22" not in path.read_text() and fast["path"] == '/runs/"é\\***'


def test_mlflows_database_engine_connects_with_the_tls_settings(tmp_path):
    """MLflow's store is a SQLAlchemy engine on the backend URI: the TLS settings given beside it
    must reach the driver's connect call, as they reach the entrypoint's own psycopg check."""
    from sqlalchemy import create_engine

    from services.mlflow.entrypoint import resolved

    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "MLFLOW_DATABASE_HOST": "db.internal",
        "MLFLOW_DATABASE_NAME": "mlflow",
        "MLFLOW_DATABASE_USER": "mlflow",
        "MLFLOW_DATABASE_PASSWORD": "p w",
        "MLFLOW_DATABASE_SSLMODE": "verify-full",
        "MLFLOW_DATABASE_SSLROOTCERT": str(bundle),
    }
    engine = create_engine(resolved(env)["MLFLOW_BACKEND_STORE_URI"])
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert (kwargs["sslmode"], kwargs["sslrootcert"], kwargs["password"]) == ("verify-full", str(bundle), "p w")


@pytest.mark.parametrize(
    "secret,rid",
    [
        ("hunter22", "password=x"),
        ('pa"ss', "rid-2"),
        ("pa\\ss", "rid-3"),
        ("pässwörd", "rid-4"),
        ("pa ss=ok", "password = 'quoted value' and more"),
    ],
    ids=["request-id-password=x", "quote", "backslash", "non-ascii", "spaces"],
)
def test_every_log_line_stays_json_and_masks_the_secret_whatever_a_client_sends(tmp_path, secret, rid):
    """Redaction runs on each field before the line is encoded: a client's request id of
    ``password=x`` cannot break the line's JSON, and a password with a quote, a backslash or
    non-ASCII characters is masked although JSON escapes it."""
    import json
    import logging

    from services.common import jsonlog

    path = tmp_path / "log"
    with path.open("w") as stream:
        jsonlog.configure("api", "INFO", (secret,), stream=stream)
        logger = logging.getLogger("api")
        extra = {"checks": {"postgres": {"output": f"connection for app:{secret}@db refused"}}, "note": [secret]}
        jsonlog.request_line(logger, rid, "GET", f"/runs/{secret}", 200, 0.1, extra)
        token = jsonlog.request_id.set(rid)
        jsonlog.log(logger, f"a message with {secret}", **extra)
        logger.warning("plain %s", secret)
        jsonlog.request_id.reset(token)
    jsonlog.configure("api", "INFO")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    for line in lines:
        decoded = json.loads(line)  # every line parses
        assert not [s for s in strings(decoded) if secret in s], line
        assert decoded["request_id"].startswith(rid.split("=")[0]), line


def strings(value) -> list[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return [value] if isinstance(value, str) else []
