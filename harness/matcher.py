"""An ALB target group's matcher ("200", "200,202", "200-299"): whether a status passes it, and
validation for the command line. The load balancer's notion, so it lives with the deployment."""

from __future__ import annotations


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
