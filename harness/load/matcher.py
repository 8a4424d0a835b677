"""Judgements shared by the users and the tests, free of Locust: the target group's matcher, and a
failure reason a person can read."""

from __future__ import annotations

from harness import healthjson


def matches(status: int, matcher: str) -> bool:
    """An ALB target-group matcher: "200", "200,202", "200-299" (AWS's syntax)."""
    for part in matcher.split(","):
        part = part.strip()
        if "-" in part:
            low, high = part.split("-", 1)
            if int(low) <= status <= int(high):
                return True
        elif part and status == int(part):
            return True
    return False


def parse_matcher(matcher: str) -> str:
    """Validate a matcher for the command line: ValueError names what was expected."""
    try:
        matches(200, matcher)
        if not matcher.strip() or any(not p.strip() for p in matcher.split(",")):
            raise ValueError
    except ValueError:
        raise ValueError(f"expected an HTTP code matcher such as 200, 200,202 or 200-299, got {matcher!r}") from None
    return matcher


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
