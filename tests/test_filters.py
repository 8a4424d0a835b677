"""The filter-pattern evaluator against AWS's own documented examples (the CloudWatch Logs User
Guide, "Filter pattern syntax": matching terms in unstructured events, in JSON events; and the
CDK's JSON pattern example), then its errors."""

import json

import pytest

from harness.plan.filters import PatternError, matches

pytestmark = [pytest.mark.harness, pytest.mark.unit]

UNSTRUCTURED = [
    "[ERROR] A fatal exception has occurred",
    "Exiting with ERRORCODE: -1",
    "[WARN] Failed to process the request",
    "[ERROR] Unable to continue: Failed to process the request",
    "[ERROR] Caught IllegalArgumentException",
    "[ERROR] Unhandled Exception",
    "[INFO] all good",
]


@pytest.mark.parametrize(
    "pattern,matched",
    [
        ("ERROR", {0, 1, 3, 4, 5}),  # a term matches wherever it occurs, ERRORCODE included
        ("ERROR -Exiting", {0, 3, 4, 5}),  # "-" excludes a term
        ("ERROR Exception", {4, 5}),  # every term must occur; case-sensitive: "exception" is not one
        ('"Failed to process the request"', {2, 3}),  # a quoted phrase
        ("?WARN ?Unhandled", {2, 5}),  # "?": any of these
        ("", set(range(len(UNSTRUCTURED)))),  # the empty pattern matches every event
    ],
)
def test_aws_documented_term_patterns(pattern, matched):
    assert {i for i, e in enumerate(UNSTRUCTURED) if matches(pattern, e)} == matched


# the JSON event of AWS's "Using filter patterns to match terms in JSON log events"
EVENT = json.dumps(
    {
        "eventType": "UpdateTrail",
        "sourceIPAddress": "123.123.123.123",
        "arrayKey": ["value", "another value"],
        "objectList": [{"name": "a", "id": 1}, {"name": "b", "id": 2}],
        "SomeObject": None,
        "cluster.name": "c",
        "ThisFlag": True,
        "latency": 1500,
        "component": "HttpServer",
    }
)


@pytest.mark.parametrize(
    "pattern,expected",
    [
        ('{ $.eventType = "UpdateTrail" }', True),
        ("{ $.eventType = UpdateTrail }", True),
        ('{ $.eventType = "CreateTrail" }', False),
        ("{ $.sourceIPAddress != 123.123.* }", False),
        ("{ $.sourceIPAddress = 123.123.* }", True),
        ('{ $.arrayKey[0] = "value" }', True),
        ("{ $.objectList[1].id = 2 }", True),
        ("{ $.objectList[1].id > 1 }", True),
        ("{ $.objectList[0].id >= 2 }", False),
        ("{ $.SomeObject IS NULL }", True),
        ("{ $.ThisFlag IS TRUE }", True),
        ("{ $.ThisFlag IS FALSE }", False),
        ("{ $.SomeOtherObject NOT EXISTS }", True),
        ("{ $.eventType NOT EXISTS }", False),
        ("{ $.missing = 1 }", False),
        ('{ $.latency = "1500" }', False),  # a string never equals a number field
        # the CDK's example: HttpServer, and either an error or a latency over 1000
        ('{ ($.component = "HttpServer") && (($.error IS TRUE) || ($.latency > 1000)) }', True),
        ('{ ($.component = "HttpServer") && (($.error IS TRUE) || ($.latency > 2000)) }', False),
        ('{ $.eventType = "UpdateTrail" || $.latency < 0 }', True),
    ],
)
def test_aws_documented_json_patterns(pattern, expected):
    assert matches(pattern, EVENT) is expected


def test_a_json_pattern_matches_no_line_that_is_not_json():
    assert not matches('{ $.path = "/health" }', 'INFO: 10.0.0.1 - "GET /health HTTP/1.1" 503')


@pytest.mark.parametrize(
    "pattern,problem",
    [
        ("{ $.status = 503 ", "ends with }"),
        ("{ }", "empty JSON pattern"),
        ('{ $.path > "a" }', "strings compare with = or != only"),
        ("{ $.status 503 }", "expected a comparison"),
        ("{ ($.status = 503 }", "expected )"),
        ("{ $.flag IS MAYBE }", "IS TRUE|FALSE|NULL"),
    ],
)
def test_a_broken_pattern_names_the_problem(pattern, problem):
    with pytest.raises(PatternError, match=problem.replace("|", r"\|").replace("(", r"\(").replace(")", r"\)")):
        matches(pattern, "{}")


def test_an_alarm_needs_its_threshold_of_lines_in_one_period_and_fires_within_two_runs_of_them_plus_a_minute():
    from harness.plan.observability import EVALUATION_INTERVAL, Alarm

    alarm = Alarm("a", "ns", "M", "Sum", 300, 1, 3.0, "GreaterThanOrEqualToThreshold", {})
    assert alarm.lines_to_fire() == 3
    # 0.5 failing lines a second: the third lands 4 s after the first; at worst the first two fall
    # just before a period boundary and count again from there (4 s more), then the next evaluation
    assert alarm.seconds_to_fire(0.5) == 2 * 2 / 0.5 + EVALUATION_INTERVAL
    assert alarm.seconds_to_fire(2 / 300) == float("inf"), "two lines a period never reach three"
    above = Alarm("b", "ns", "M", "Sum", 60, 2, 0.0, "GreaterThanThreshold", {})
    assert above.lines_to_fire() == 1


def test_an_alarm_that_cannot_fire_on_failures_is_refused_naming_its_comparison():
    from harness.errors import ConfigurationError
    from harness.plan.observability import Alarm

    alarm = Alarm("a", "ns", "m", "Sum", 60, 1, 1.0, "LessThanThreshold", {})
    with pytest.raises(ConfigurationError, match="alarm a: comparison_operator GreaterThanThreshold"):
        alarm.lines_to_fire()
