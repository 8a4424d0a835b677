"""wait_until: returns the accepted value; on timeout says what, budget, elapsed, last value, last error."""

import pytest

from harness.errors import ServiceFailed, WaitTimeout
from harness.wait import ManualClock as Clock
from harness.wait import wait_until

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_returns_the_first_accepted_value():
    values = iter([1, 2, 3, 4])
    clock = Clock()
    assert (
        wait_until(
            lambda: next(values),
            until=lambda v: v >= 3,
            timeout=10,
            interval=1,
            what="x",
            clock=clock,
            pause=clock.pause,
        )
        == 3
    )
    assert clock.now == 2


def test_timeout_message_has_what_budget_elapsed_last_value_and_error():
    clock = Clock()
    calls = iter([503, 503, RuntimeError("connection reset")] * 10)

    def probe():
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    with pytest.raises(WaitTimeout) as info:
        wait_until(
            probe,
            until=lambda s: s == 200,
            timeout=2.5,
            interval=1,
            what="api /health to answer 200",
            clock=clock,
            pause=clock.pause,
        )
    msg = str(info.value)
    assert "expected api /health to answer 200 within 2.5s" in msg
    assert "last value 503" in msg and "last error RuntimeError: connection reset" in msg
    assert "after 2.5s and 4 polls" in msg and "hint:" in msg


def test_fatal_errors_stop_the_wait_at_once():
    clock = Clock()

    def probe():
        raise ServiceFailed("mlflow running", "it exited with code 2")

    with pytest.raises(ServiceFailed):
        wait_until(probe, timeout=100, what="x", clock=clock, pause=clock.pause)
    assert clock.now == 0


def test_never_sleeps_past_the_deadline():
    clock = Clock()
    with pytest.raises(WaitTimeout):
        wait_until(lambda: False, timeout=1.0, interval=0.7, what="x", clock=clock, pause=clock.pause)
    assert clock.now == pytest.approx(1.0)


def test_progress_is_reported():
    clock, seen = Clock(), []
    with pytest.raises(WaitTimeout):
        wait_until(
            lambda: False,
            timeout=1,
            interval=0.5,
            what="mlflow",
            clock=clock,
            pause=clock.pause,
            progress=lambda what, elapsed, budget: seen.append((what, elapsed, budget)),
        )
    assert seen[0] == ("mlflow", 0.0, 1) and seen[-1][1] == 1.0
