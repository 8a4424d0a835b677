"""Started by tests/test_cleanup.py in a child pytest: bring the stack up, say so, then block."""

import os
import threading
from pathlib import Path

import pytest

pytestmark = pytest.mark.harness


def test_block(stack, harness_session):
    marker = Path(os.environ["CASE_MARKER"])
    pids = " ".join(svc.ident for svc in stack.services.values())
    marker.write_text(f"{harness_session.id}\n{pids}\n")
    threading.Event().wait(120)  # until the parent test interrupts this pytest
