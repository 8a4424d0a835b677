"""Judgements shared by the users and the tests, free of Locust: the target group's matcher, and a
failure reason a person can read."""

from __future__ import annotations

from harness import healthjson
from harness.matcher import matches, parse_matcher

__all__ = ["matches", "parse_matcher", "reason"]


def reason(status: int, body: object, error: object = None) -> str:
    """Why a response failed, in one line: status, the api's error and detail, or the transport error."""
    if error is not None and not status:
        return f"no answer: {type(error).__name__}: {str(error)[:160]}"
    if isinstance(body, dict) and isinstance(body.get("checks"), dict):  # application/health+json
        said = "; ".join(healthjson.failing(body)) or body.get("output") or body.get("status")
        return f"status {status}: {body.get('status')}: {str(said)[:200]}"
    if isinstance(body, dict):
        said = body.get("detail") or body.get("error") or body.get("status")
        if isinstance(said, (dict, list)):
            said = str(said)
        return f"status {status}: {str(said)[:160]}" if said else f"status {status}"
    return f"status {status}"
