"""Settings precedence: CLI, then HARNESS_* env, then pytest.ini, then default; errors name the source."""

import pytest

from harness.errors import ConfigurationError
from harness.settings import resolve

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_defaults_with_sources():
    s = resolve({}, {}, {})
    assert (s.runtime, s.timeout_multiplier, s.target_url, s.keep_on_failure) == ("auto", 1.0, None, False)
    assert set(s.sources.values()) == {"default"}


def test_precedence_cli_env_ini_default():
    ini = {"harness_runtime": "docker", "harness_timeout_multiplier": "3"}
    env = {"HARNESS_RUNTIME": "local", "HARNESS_TIMEOUT_MULTIPLIER": "2"}
    s = resolve({"runtime": "auto"}, env, ini)
    assert s.runtime == "auto" and s.sources["runtime"] == "--runtime"
    assert s.timeout_multiplier == 2.0 and s.sources["timeout_multiplier"] == "HARNESS_TIMEOUT_MULTIPLIER"
    s = resolve({}, {}, ini)
    assert s.runtime == "docker" and s.sources["runtime"] == "pytest.ini harness_runtime"


def test_header_lines_name_every_setting_and_source():
    lines = resolve({"keep_on_failure": True}, {}, {}).describe()
    assert "keep_on_failure=True (from --keep-on-failure)" in lines
    assert any(line.startswith("runtime='auto' (from default)") for line in lines)


@pytest.mark.parametrize("cli,env,message", [
    ({"runtime": "kubernetes"}, {}, "--runtime"),
    ({}, {"HARNESS_TIMEOUT_MULTIPLIER": "fast"}, "HARNESS_TIMEOUT_MULTIPLIER"),
    ({}, {"HARNESS_TIMEOUT_MULTIPLIER": "100"}, "between 0.1 and 20"),
    ({}, {"HARNESS_TARGET_URL": "ftp://x"}, "HARNESS_TARGET_URL"),
    ({}, {"HARNESS_KEEP_ON_FAILURE": "perhaps"}, "expected true or false"),
])
def test_bad_values_name_their_source(cli, env, message):
    with pytest.raises(ConfigurationError, match=message):
        resolve(cli, env, {})


def test_settings_are_frozen():
    s = resolve({}, {}, {})
    with pytest.raises(AttributeError):
        s.runtime = "local"
