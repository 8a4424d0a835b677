"""A service's own configuration check, run as the service runs it: ``python -m <module>
--check-config`` with an environment, exit 0 and its effective settings as JSON, or exit 2 and
its message. The harness never imports service code; this is how it learns a service's rules."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Mapping

from harness.errors import ConfigurationError, HarnessError
from harness.paths import project

KEEP = ("PATH", "LANG", "LC_ALL", "HOME")


def check_config(module: str, env: Mapping[str, str], where: str = "") -> dict:
    """The effective settings of ``module`` under ``env``; ConfigurationError with the service's
    own message when it refuses them (``where`` says whose environment it was)."""
    return dict(_check(module, tuple(sorted(env.items())), where))


@functools.lru_cache(maxsize=256)
def _check(module: str, env: tuple[tuple[str, str], ...], where: str) -> tuple[tuple[str, object], ...]:
    base = {k: v for k, v in os.environ.items() if k in KEEP}
    result = subprocess.run(
        [sys.executable, "-m", module, "--check-config"],
        cwd=project().root,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **dict(env), "PYTHONPATH": project().pythonpath},
    )
    if result.returncode == 2:
        raise ConfigurationError(
            f"{where or module}: a configuration {module} accepts",
            result.stderr.strip()[-800:],
            f"python -m {module} --check-config says so",
        )
    if result.returncode != 0:
        raise HarnessError(
            f"`python -m {module} --check-config` to exit 0 or 2",
            f"exit {result.returncode}: {result.stderr.strip()[-800:]}",
            "",
        )
    return tuple(json.loads(result.stdout).items())
