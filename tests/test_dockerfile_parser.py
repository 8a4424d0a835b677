"""The harness's Dockerfile HEALTHCHECK parser: the budgets of the faults and timing checks come
from these values."""

import pytest

from harness.errors import ConfigurationError
from harness.plan.dockerfile import healthcheck, parse_duration, service_healthcheck

pytestmark = [pytest.mark.harness, pytest.mark.unit]


@pytest.mark.parametrize("raw,seconds", [("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200)])
def test_durations(raw, seconds):
    assert parse_duration(raw, "x") == seconds


@pytest.mark.parametrize("raw", ["", "10", "ten", "10s5"])
def test_bad_durations_are_named(raw):
    with pytest.raises(ConfigurationError, match="HEALTHCHECK --interval"):
        parse_duration(raw, "Dockerfile HEALTHCHECK --interval")


def test_defaults_and_exec_form(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text('FROM x\nHEALTHCHECK CMD ["CMD-SHELL", "curl -f http://localhost:1/h"]\n')
    hc = healthcheck(f)
    assert (hc.interval, hc.timeout, hc.retries, hc.start_period) == (30, 30, 3, 0)
    assert hc.path == "/h" and hc.unhealthy_after == 3 * 60


def test_missing_check_is_an_error(tmp_path):
    f = tmp_path / "Dockerfile"
    f.write_text("FROM x\n")
    with pytest.raises(ConfigurationError, match="a HEALTHCHECK instruction"):
        healthcheck(f)


def test_docker_api_form_in_nanoseconds():
    api = service_healthcheck("mlflow").as_docker_api(start_period=0, interval=1)
    assert api["interval"] == 1_000_000_000 and api["start_period"] == 0
    assert api["test"][0] == "CMD-SHELL" and "/mlflow/health" in api["test"][1]
