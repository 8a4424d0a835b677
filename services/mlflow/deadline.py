"""A call the api stopped waiting for is not started: the api sends each MLflow call with
``X-Request-Deadline`` (Unix seconds, its attempt's timeout from now), and MLflow's Flask app
refuses the call with 504 ``DEADLINE_EXCEEDED`` when its handler would start after it.

Why: the api keeps a run's claim for a lease that must outlast the last moment MLflow may still
act on a create the api gave up on (``API_MLFLOW_SETTLE_TIME``). Without the fence that moment is
unbounded: a paused or saturated MLflow takes the request off its socket whenever it resumes and
creates the run then, after a retry has searched for it and made a second. With the fence, what
remains is a handler that had started in time, which a few statements on MLflow's database bound.
The clocks are the hosts' (NTP, or the Amazon Time Sync Service on AWS): skew in milliseconds
against a lease of seconds."""

from __future__ import annotations

import time

from flask import Flask, Response, jsonify, request

HEADER = "X-Request-Deadline"


def past_deadline(value: str | None, now: float) -> bool:
    """Whether a call with this header value is already late; a value that is not a number is
    ignored (the call runs as any call without the header)."""
    if not value:
        return False
    try:
        return now > float(value)
    except ValueError:
        return False


def install(app: Flask) -> None:
    """Refuse, before its handler, every call whose deadline has passed."""

    def fence() -> Response | None:
        deadline = request.headers.get(HEADER)
        if not past_deadline(deadline, time.time()):
            return None
        answer = jsonify(
            error_code="DEADLINE_EXCEEDED",
            message=f"the caller stopped waiting at {deadline}; the call was not started",
        )
        answer.status_code = 504
        return answer

    app.before_request(fence)
