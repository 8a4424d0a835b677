"""Ports handed out are free, distinct, and locked against other processes."""

import socket
import subprocess
import sys

import pytest

from harness.ports import free_port, release

pytestmark = [pytest.mark.harness, pytest.mark.unit]


def test_ports_are_distinct_and_bindable():
    ports = [free_port() for _ in range(20)]
    try:
        assert len(set(ports)) == 20
        for p in ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", p))
    finally:
        for p in ports:
            release(p)


def test_a_port_held_here_is_skipped_by_another_process():
    mine = free_port()
    try:
        code = (
            "import fcntl, os; from harness.ports import LOCK_DIR\n"
            f"fd = os.open(LOCK_DIR / '{mine}.lock', os.O_RDWR)\n"
            "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('free')\n"
            "except BlockingIOError:\n    print('held')\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "held"
    finally:
        release(mine)


def test_a_port_not_released_by_hand_leaves_no_lock_file_after_the_process_exits():
    from harness.ports import LOCK_DIR

    done = subprocess.run(
        [sys.executable, "-c", "from harness.ports import free_port; print(free_port())"],
        capture_output=True,
        text=True,
        check=True,
    )
    port = int(done.stdout)
    assert not (LOCK_DIR / f"{port}.lock").exists()


def test_sweep_removes_only_the_lock_files_no_process_holds():
    from harness.ports import LOCK_DIR, sweep

    held = free_port()
    stale = LOCK_DIR / "1.lock"  # as a SIGKILLed run leaves it: the file without its holder
    stale.touch()
    try:
        swept = sweep()
        assert 1 in swept and not stale.exists()
        assert held not in swept and (LOCK_DIR / f"{held}.lock").exists()
    finally:
        release(held)
        stale.unlink(missing_ok=True)
