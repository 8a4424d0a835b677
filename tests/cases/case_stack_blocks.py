"""Started by tests/test_cleanup.py in a child pytest: bring the stack up, say so, then block."""

import os
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.harness


def test_block(stack, run):
    marker = Path(os.environ["CASE_MARKER"])
    pids = " ".join(svc.ident for svc in stack.services.values())
    marker.write_text(f"{run.run_id}\n{pids}\n")
    threading.Event().wait(120)  # until the parent test interrupts this pytest
