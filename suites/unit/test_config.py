"""Configuration: every bad or missing variable is named, with what was expected."""

from pathlib import Path
from urllib.parse import quote

import pytest

from services.api.__main__ import main as api_main
from services.api.config import ConfigError, load_settings

pytestmark = pytest.mark.unit

GOOD = {"API_DATABASE_URL": "postgresql://app:hunter22@db:5432/api", "API_MLFLOW_URL": "http://mlflow:5000/mlflow"}


@pytest.fixture
def env(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("API_"):
            monkeypatch.delenv(k)
    for k, v in GOOD.items():
        monkeypatch.setenv(k, v)
    return monkeypatch


def error_of(env) -> str:
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.code == 2
    return info.value.message


def test_defaults_load(env):
    s = load_settings()
    assert s.port == 8000 and s.required == ("postgres", "mlflow")
    assert s.mlflow_budget == pytest.approx(3 * 1.0 + 0.1 + 0.2)


def test_missing_variable_is_named(env):
    env.delenv("API_DATABASE_URL")
    assert "API_DATABASE_URL: required but not set" in error_of(env)


@pytest.mark.parametrize(
    "var,value,expected",
    [
        ("API_PORT", "abc", "API_PORT: Input should be a valid integer"),
        ("API_PORT", "70000", "API_PORT: Input should be less than or equal to 65535"),
        ("API_DB_TIMEOUT", "0", "API_DB_TIMEOUT: Input should be greater than 0"),
        ("API_MLFLOW_URL", "http://mlflow:5000", "API_MLFLOW_URL: expected the MLflow prefix"),
        ("API_MLFLOW_URL", "http://mlflow:5000/mlflow/", "API_MLFLOW_URL: expected the MLflow prefix"),
        ("API_MLFLOW_URL", "mlflow:5000/mlflow", "API_MLFLOW_URL: expected an http(s):// URL"),
        ("API_DATABASE_URL", "mysql://u:p@h/db", "API_DATABASE_URL: expected a postgresql:// URL"),
        ("API_REQUIRED", "postgres,redis", "API_REQUIRED: Input should be 'postgres' or 'mlflow'"),
        ("API_LOG_LEVEL", "LOUD", "API_LOG_LEVEL: Input should be"),
    ],
)
def test_malformed_variable_is_named(env, var, value, expected):
    env.setenv(var, value)
    assert expected in error_of(env)


def test_health_budget_must_fit_request_timeout(env):
    env.setenv("API_MLFLOW_TIMEOUT", "5")
    env.setenv("API_REQUEST_TIMEOUT", "6")
    assert "must be below API_REQUEST_TIMEOUT" in error_of(env)


@pytest.mark.parametrize(
    "var,value",
    [
        ("API_CLAIM_LEASE", "20"),
        ("API_QUEUE_WAIT", "15"),
        ("API_MLFLOW_SETTLE_TIME", "25"),
        ("API_REQUEST_TIMEOUT", "25"),
    ],
)
def test_the_claim_lease_must_cover_the_longest_write(env, var, value):
    """A lease shorter than queue wait + request deadline + MLflow's settle time lets a retry
    search MLflow while an earlier create may still land: refused at start-up, the pieces named."""
    assert load_settings().claim_lease >= load_settings().longest_write
    env.setenv(var, value)
    message = error_of(env)
    assert "API_CLAIM_LEASE=" in message and "must be at least the longest write" in message
    assert all(name in message for name in ("API_QUEUE_WAIT=", "API_REQUEST_TIMEOUT=", "API_MLFLOW_SETTLE_TIME="))


def test_database_url_is_never_echoed(env):
    env.setenv("API_DATABASE_URL", "mysql://u:topsecretpw@h/db")
    message = error_of(env)
    assert "topsecretpw" not in message and "API_DATABASE_URL" in message


def test_required_comma_list(env):
    env.setenv("API_REQUIRED", "postgres")
    s = load_settings()
    assert s.is_required("postgres") and not s.is_required("mlflow")


PIECES = {
    "API_DATABASE_HOST": "db.internal",
    "API_DATABASE_NAME": "api",
    "API_DATABASE_USER": "api",
    "API_DATABASE_PASSWORD": "p@ss:w/rd%",
}


def test_database_in_pieces_composes_the_url_with_the_password_quoted(env):
    env.delenv("API_DATABASE_URL")
    for k, v in PIECES.items():
        env.setenv(k, v)
    s = load_settings()
    assert s.database_url == "postgresql://api:p%40ss%3Aw%2Frd%25@db.internal:5432/api"
    env.setenv("API_DATABASE_PORT", "6432")
    assert load_settings().database_url.endswith("@db.internal:6432/api")


@pytest.mark.parametrize(
    "drop, expected",
    [
        ("API_DATABASE_PASSWORD", "API_DATABASE_PASSWORD: required with API_DATABASE_HOST"),
        ("API_DATABASE_HOST", "API_DATABASE_HOST: required with API_DATABASE_NAME"),
    ],
)
def test_an_incomplete_set_of_pieces_names_what_is_missing(env, drop, expected):
    env.delenv("API_DATABASE_URL")
    for k, v in PIECES.items():
        if k != drop:
            env.setenv(k, v)
    message = error_of(env)
    assert expected in message and "p@ss" not in message


def test_the_url_and_its_pieces_together_are_refused(env):
    env.setenv("API_DATABASE_HOST", "db")
    assert "API_DATABASE_URL and API_DATABASE_HOST: expected the URL or its pieces, not both" in error_of(env)


def test_a_missing_database_says_both_ways_to_give_it(env):
    env.delenv("API_DATABASE_URL")
    assert "API_DATABASE_URL: required but not set (or its pieces: API_DATABASE_HOST" in error_of(env)


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    return str(path)


def test_tls_settings_join_the_url_whole_or_in_pieces(env, bundle):
    env.setenv("API_DATABASE_SSLMODE", "verify-full")
    env.setenv("API_DATABASE_SSLROOTCERT", bundle)
    whole = load_settings().database_url
    assert whole.endswith(f"?sslmode=verify-full&sslrootcert={quote(bundle, safe='')}"), whole
    env.delenv("API_DATABASE_URL")
    for k, v in PIECES.items():
        env.setenv(k, v)
    assert load_settings().database_url.startswith("postgresql://api:p%40ss%3Aw%2Frd%25@db.internal:5432/api?sslmode=")


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("verify-ful", "API_DATABASE_SSLMODE: expected one of disable, allow, prefer, require, verify-ca, "),
        ("verify-full", "API_DATABASE_SSLROOTCERT: required with API_DATABASE_SSLMODE=verify-full"),
        ("verify-ca", "API_DATABASE_SSLROOTCERT: required with API_DATABASE_SSLMODE=verify-ca"),
    ],
)
def test_bad_tls_settings_name_the_variable(env, mode, expected):
    env.setenv("API_DATABASE_SSLMODE", mode)
    assert expected in error_of(env)


@pytest.mark.parametrize(
    "root, expected",
    [
        ("/nowhere/ca.pem", "API_DATABASE_SSLROOTCERT: expected a readable CA bundle, got '/nowhere/ca.pem'"),
        ("empty", "API_DATABASE_SSLROOTCERT: expected PEM certificates in"),
    ],
)
def test_a_bundle_that_is_not_there_stops_the_start_not_the_check(env, tmp_path, capsys, root, expected):
    """The configuration check may run where the image's bundle is not (on the host, for a task
    definition's settings); the start, where the service runs, refuses a bundle it cannot read."""
    if root == "empty":
        root = str(tmp_path / "empty.pem")
        Path(root).write_text("not a certificate")
    env.setenv("API_DATABASE_SSLMODE", "verify-full")
    env.setenv("API_DATABASE_SSLROOTCERT", root)
    assert api_main(["--check-config"]) == 0
    capsys.readouterr()
    assert api_main([]) == 2
    assert expected in capsys.readouterr().err


def test_tls_settings_that_contradict_the_url_are_refused(env, bundle):
    env.setenv("API_DATABASE_URL", "postgresql://u:p@db/api?sslmode=disable")
    env.setenv("API_DATABASE_SSLMODE", "verify-full")
    env.setenv("API_DATABASE_SSLROOTCERT", bundle)
    assert "API_DATABASE_URL: its sslmode differs from the TLS settings given beside it" in error_of(env)
    env.setenv("API_DATABASE_URL", "postgresql://u:p@db/api?sslmode=verify-full")
    assert load_settings().database_url.count("sslmode") == 1


def test_tls_settings_without_a_database_are_refused(env):
    env.delenv("API_DATABASE_URL")
    env.setenv("API_DATABASE_SSLMODE", "require")
    assert "API_DATABASE_SSLMODE: given without API_DATABASE_URL or its pieces" in error_of(env)


def test_tls_settings_keep_the_urls_other_parameters_as_libpq_reads_them(env, bundle):
    """libpq decodes only %XX in a URL's query: a space encoded as + would reach the server as +."""
    from psycopg.conninfo import conninfo_to_dict

    env.setenv("API_DATABASE_URL", "postgresql://u:p@db/api?options=-c%20statement_timeout%3D5000&application_name=")
    env.setenv("API_DATABASE_SSLMODE", "verify-full")
    env.setenv("API_DATABASE_SSLROOTCERT", bundle)
    seen = conninfo_to_dict(load_settings().database_url)
    assert seen["options"] == "-c statement_timeout=5000" and seen["application_name"] == "", seen
    assert (seen["sslmode"], seen["sslrootcert"]) == ("verify-full", bundle)
