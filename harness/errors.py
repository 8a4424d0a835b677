"""The harness's exceptions. Every message says what was expected, what was seen, and a hint.

HarnessError
 +-- ConfigurationError    a setting, option or file is invalid (names the field)
 +-- DependencyMissing     a binary or engine the run needs is absent (says what to install)
 +-- WaitTimeout           a wait ran out of budget (what, budget, elapsed, last value, last error)
 +-- ServiceFailed         a service exited or turned unhealthy (with its log tail); fatal to waits
"""

from __future__ import annotations


class HarnessError(Exception):
    def __init__(self, expected: str, seen: str, hint: str = "") -> None:
        self.expected, self.seen, self.hint = expected, seen, hint
        message = f"expected {expected}; saw {seen}"
        if hint:
            message += f"\nhint: {hint}"
        super().__init__(message)


class ConfigurationError(HarnessError):
    pass


class DependencyMissing(HarnessError):
    pass


class WaitTimeout(HarnessError):
    pass


class ServiceFailed(HarnessError):
    """Fatal: waiting longer cannot help."""
