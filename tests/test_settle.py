"""``settle`` sends every failed write again, with its key, as clients that retry their 503s would.
When many writes are told to come back later (a key held while an earlier create may still land),
each must still be sent again: a fresh-clone CI run of mlflow-restarted had 26 writes held after
MLflow's restart, and those queued behind the first eight (8 at a time, each held about 30 s)
were never sent at all ("after 0 retries") because the time ran out while they waited their turn.
A stand-in ``send`` holds every key for a short while and answers 503 with Retry-After until then."""

import math
import threading
import time

import pytest

from harness.faults.writer import WriteResult, settle

pytestmark = [pytest.mark.harness, pytest.mark.unit]
HOLD = 0.6  # seconds every key stays held, as the api holds it while a create may still land


def held_keys(hold: float = HOLD):
    """A ``send`` that answers 503 with Retry-After until ``hold`` has passed, then 201; and the
    count of sends per key."""
    released = time.monotonic() + hold
    sent: dict[str, int] = {}
    lock = threading.Lock()

    def send(_client, result: WriteResult) -> WriteResult:
        with lock:
            sent[result.key] = sent.get(result.key, 0) + 1
        left = released - time.monotonic()
        if left > 0:
            return WriteResult(0.0, 503, detail="its key is held", key=result.key, retry_after=math.ceil(left))
        return WriteResult(0.0, 201, run_id=f"id-{result.key}", key=result.key)

    return send, sent


def failed_writes(n: int) -> list[WriteResult]:
    return [WriteResult(0.0, 503, detail="the run may still be made", key=f"k-{i}", retry_after=1) for i in range(n)]


def test_every_held_write_is_sent_again_and_recorded_however_many_wait_their_turn():
    send, sent = held_keys()
    writes = failed_writes(12)
    unsettled = settle(writes, send, timeout=0.3, interval=0.05, parallel=2, longest=10)
    assert unsettled == [], [f"{r.key}: {r.retries} retries, answers {r.answers}" for r in unsettled]
    assert all(r.retries >= 1 for r in writes)
    assert sorted(sent) == sorted(r.key for r in writes)


def test_a_write_is_sent_again_when_its_retry_after_says_not_before():
    send, sent = held_keys()  # Retry-After: 1 while held for 0.6 s
    writes = failed_writes(3)
    assert settle(writes, send, timeout=0.3, interval=0.05, parallel=2, longest=10) == []
    assert sent == {"k-0": 2, "k-1": 2, "k-2": 2}, sent  # at once, then a second later


def test_settle_gives_up_when_the_longest_wait_has_passed_and_says_what_it_last_heard():
    send, _ = held_keys(hold=60)
    writes = failed_writes(3)
    started = time.monotonic()
    unsettled = settle(writes, send, timeout=0.2, interval=0.05, parallel=2, longest=0.5)
    assert time.monotonic() - started < 3
    assert [r.key for r in unsettled] == ["k-0", "k-1", "k-2"]
    assert all(r.retries >= 1 and r.settled is not None and r.settled.status == 503 for r in unsettled)


def test_writes_already_recorded_are_not_sent_again():
    send, sent = held_keys(hold=0)
    recorded = WriteResult(0.0, 201, run_id="id-done", key="done")
    writes = [recorded, *failed_writes(2)]
    assert settle(writes, send, timeout=1, interval=0.05) == []
    assert "done" not in sent and recorded.retries == 0
