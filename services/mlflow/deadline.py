"""Two fences that bound how late MLflow acts on a call its caller gave up on.

The api sends each MLflow call with two headers (Unix seconds, the hosts' clocks):

- ``X-Request-Deadline``, when its attempt stops waiting: MLflow's Flask app refuses a call whose
  handler would start after it, with 504 ``DEADLINE_EXCEEDED``;
- ``X-Commit-Deadline``, the last moment MLflow may still commit what the call writes (the
  attempt's end plus ``API_MLFLOW_SETTLE_TIME``): before MLflow commits a transaction of such a
  call (any but a GET), one statement on its database asks the database's own clock how long is
  left until ``COMMIT_TIME`` before the deadline and sets ``idle_in_transaction_session_timeout``
  to that, for the transaction only. Nothing left: the transaction is rolled back (504
  ``DEADLINE_EXCEEDED``). Time left: the COMMIT must reach the database within it, or the
  database ends the session and the write with it; ``COMMIT_TIME`` is kept for the commit to
  become visible once it arrives. So a write of a call lands by its commit deadline or not at
  all, however the call was held up (a paused worker, a slow or held statement, the COMMIT itself
  delayed on the way), short of a commit that takes Postgres itself over ``COMMIT_TIME``. A call
  that commits in several transactions (MLflow's log-batch) may have the first committed and
  the late one rolled back.

Why: the api keeps a run's claim for a lease that must outlast the last moment MLflow may still
act on a create the api gave up on. Without the fences that moment is unbounded (a paused or
saturated MLflow takes the request off its socket whenever it resumes, or a statement held on the
way to the database commits whenever it arrives), after a retry has searched for the run and made
a second. The clocks are the hosts' (NTP, or the Amazon Time Sync Service on AWS): skew in
milliseconds against a lease of seconds."""

from __future__ import annotations

import math
import time

from flask import Flask, Response, g, has_request_context, jsonify, request
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import DEADLINE_EXCEEDED
from sqlalchemy import event, text
from sqlalchemy.orm import Session

HEADER = "X-Request-Deadline"
COMMIT_HEADER = "X-Commit-Deadline"
INT_MAX = 2**31 - 1  # the largest idle_in_transaction_session_timeout Postgres takes, in ms
# of the settle time, what is kept for the COMMIT itself once Postgres has it (its WAL flush, a
# synchronous standby's acknowledgement) before other sessions see the write: the COMMIT must
# reach Postgres this long before the deadline
COMMIT_TIME = 1.0
# on Postgres' clock, in one statement: whether any time is left before the commit deadline and, if
# so, the ms left (at least 1: 0 would mean "no timeout") set as the transaction's idle timeout. A
# transaction with less than LEAST_ARMED left is not armed: it is rolled back at once (504), where
# a timeout of a few ms would end the session before a loaded client's ROLLBACK or COMMIT arrived
# (the rollback then failed, and MLflow answered 500 instead of 504).
LEAST_ARMED = 0.05  # seconds
_ARM = text(
    "SELECT in_time, CASE WHEN in_time THEN set_config('idle_in_transaction_session_timeout', ms::text, true) END"
    " FROM (SELECT clock_timestamp() < to_timestamp(:by) - make_interval(secs => :least) AS in_time,"
    " LEAST(:int_max, CEIL(EXTRACT(EPOCH FROM to_timestamp(:by) - clock_timestamp()) * 1000))::bigint AS ms) AS left_"
)


class CommitTooLate(MlflowException):
    """A write's commit deadline passed before it could commit: rolled back (MLflow's session
    maker rolls back on an MlflowException and its handlers answer it: 504 DEADLINE_EXCEEDED)."""

    def __init__(self, by: float) -> None:
        super().__init__(
            f"the commit deadline {by:.3f} passed; this transaction was rolled back", error_code=DEADLINE_EXCEEDED
        )


def seconds(value: str | None) -> float | None:
    """A header's Unix time, or None when absent or not a number (the call then runs as any call
    without the header)."""
    if not value:
        return None
    try:
        at = float(value)
    except ValueError:
        return None
    return at if math.isfinite(at) else None


def past_deadline(value: str | None, now: float) -> bool:
    """Whether a call with this X-Request-Deadline value is already late."""
    at = seconds(value)
    return at is not None and now > at


def install(app: Flask) -> None:
    """Refuse, before its handler, every call whose deadline has passed; hold every write's commit
    to its call's commit deadline."""

    def fence() -> Response | None:
        g.commit_deadline = seconds(request.headers.get(COMMIT_HEADER)) if request.method != "GET" else None
        deadline = request.headers.get(HEADER)
        if not past_deadline(deadline, time.time()):
            return None
        return late(f"the caller stopped waiting at {deadline}; the call was not started")

    app.before_request(fence)
    if not event.contains(Session, "before_commit", commit_fence):
        event.listen(Session, "before_commit", commit_fence)


def late(message: str) -> Response:
    answer = jsonify(error_code="DEADLINE_EXCEEDED", message=message)
    answer.status_code = 504
    return answer


def commit_fence(session: Session) -> None:
    """SQLAlchemy's ``before_commit`` for every session: within a call that has a commit deadline,
    the commit lands before it or not at all."""
    by = g.get("commit_deadline") if has_request_context() else None
    if by is None:
        return
    session.flush()  # the writes first (a commit flushes only after this hook): then only the COMMIT is left
    if session.get_bind().dialect.name != "postgresql":  # no server-side bound: the host's clock only
        if time.time() >= by - COMMIT_TIME:
            raise CommitTooLate(by)
        return
    if not session.execute(_ARM, {"by": by - COMMIT_TIME, "int_max": INT_MAX, "least": LEAST_ARMED}).one().in_time:
        raise CommitTooLate(by)
