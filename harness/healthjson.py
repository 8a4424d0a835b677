"""The api's health answers: ``application/health+json`` (IETF draft "Health Check Response
Format for HTTP APIs"). One reading of that format for every part of the harness."""

from __future__ import annotations

from typing import Any

MEDIA_TYPE = "application/health+json"


def body(response: Any) -> dict | None:
    """The parsed body when ``response`` (httpx or requests) is health+json, else None."""
    if not response.headers.get("content-type", "").startswith(MEDIA_TYPE):
        return None
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def summary(response: Any) -> dict:
    """{"http": status, "status": pass|warn|fail or None, "checks": {"postgres:responseTime": status}}."""
    parsed = body(response) or {}
    checks = parsed["checks"] if isinstance(parsed.get("checks"), dict) else {}
    return {
        "http": response.status_code,
        "status": parsed.get("status"),
        "checks": {k: (v[0].get("status") if v else None) for k, v in checks.items()},
    }


def failing(parsed: dict) -> list[str]:
    """ "name status: output" for every check that did not pass."""
    checks = parsed["checks"] if isinstance(parsed.get("checks"), dict) else {}
    return [
        f"{name} {c.get('status')}{': ' + c['output'] if c.get('output') else ''}"
        for name, results in checks.items()
        for c in results
        if c.get("status") != "pass"
    ]
