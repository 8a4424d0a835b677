"""Scenario files are validated at collection: a wrong file names the file, the field and what was expected."""

import pytest

from harness.errors import ConfigurationError
from harness.faults.scenarios import evaluate, load, load_all

pytestmark = [pytest.mark.harness, pytest.mark.unit]

GOOD = """\
name: {name}
description: Postgres frozen for a while, for this test.
fault: {{kind: pause, target: postgres, duration: 2}}
expect:
  during:
    /health: {{status: 503, health: fail}}
  detect_within: ttl + db_timeout + slack
"""


def write(tmp_path, text, name="x"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


def test_every_shipped_scenario_is_valid():
    scenarios = load_all()
    assert len(scenarios) >= 15
    assert {s.kind for s in scenarios} >= {"kill", "pause", "restart", "latency", "refuse", "respond", "reset"}


def test_a_good_file_loads(tmp_path):
    s = load(write(tmp_path, GOOD.format(name="x")))
    assert (s.kind, s.target, s.duration) == ("pause", "postgres", 2.0)
    assert s.budget("detect_within", {"ttl": 1, "db_timeout": 1, "slack": 0.5}) == 2.5


@pytest.mark.parametrize(
    "change,field,expected",
    [
        (("kind: pause", "kind: freeze"), "fault.kind", "'freeze' is not one of"),
        (("target: postgres", "target: redis"), "fault.target", "'redis' is not one of"),
        (("kind: pause", "kind: latency"), "fault.target", "is not one of ['mlflow->postgres', 'api->postgres'"),
        (("status: 503", "status: fivehundred"), "expect.during./health.status", "is not of type 'integer'"),
        (("duration: 2", "duration: -1"), "fault.duration", "less than the minimum"),
    ],
)
def test_a_wrong_field_is_named(tmp_path, change, field, expected):
    path = write(tmp_path, GOOD.format(name="x").replace(*change))
    with pytest.raises(ConfigurationError) as info:
        load(path)
    msg = str(info.value)
    assert "x.yaml" in msg and f"{field}: " in msg and expected in msg


def test_unknown_top_level_key(tmp_path):
    with pytest.raises(ConfigurationError, match="Additional properties are not allowed"):
        load(write(tmp_path, GOOD.format(name="x") + "surprise: 1\n"))


def test_name_must_match_the_file(tmp_path):
    with pytest.raises(ConfigurationError, match="name equal to the file name 'x'"):
        load(write(tmp_path, GOOD.format(name="other")))


def test_bad_yaml(tmp_path):
    with pytest.raises(ConfigurationError, match="valid YAML"):
        load(write(tmp_path, "name: [unclosed\n"))


@pytest.mark.parametrize(
    "expr,message",
    [
        ("ttl + nonsense", "'nonsense'"),
        ("__import__('os')", "numbers, names"),
        ("ttl +", "an arithmetic expression"),
    ],
)
def test_budget_expressions_are_safe(expr, message):
    with pytest.raises(ConfigurationError, match=message):
        evaluate(expr, {"ttl": 1.0}, "f.yaml: expect.detect_within")


def test_budget_functions():
    assert evaluate("max(ttl, 2) * 2 - 1", {"ttl": 1.0}, "x") == 3.0
