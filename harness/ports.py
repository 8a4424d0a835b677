"""Free loopback ports that parallel runs (xdist workers, two pytest processes) do not share.

Binding port 0 picks a free port, but two processes can be handed the same one between the
probe and the child's bind. Each pick is therefore also claimed with an exclusive lock file
held for the life of the process, so a concurrent run skips it. A port not released by hand is
released when the process exits: its lock file does not outlive the run.
"""

from __future__ import annotations

import atexit
import fcntl
import os
import socket
import tempfile
from pathlib import Path

LOCK_DIR = Path(tempfile.gettempdir()) / "harness-ports"
_held: dict[int, int] = {}


def free_port(host: str = "127.0.0.1") -> int:
    LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port in _held:
            continue
        path = LOCK_DIR / f"{port}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.fstat(fd).st_ino != os.stat(path).st_ino:  # swept between open and lock
                raise BlockingIOError
        except (BlockingIOError, FileNotFoundError):
            os.close(fd)
            continue
        _held[port] = fd
        return port
    raise OSError("no free loopback port found after 50 tries")


def release(port: int) -> None:
    fd = _held.pop(port, None)
    if fd is not None:
        os.close(fd)
        (LOCK_DIR / f"{port}.lock").unlink(missing_ok=True)


def sweep() -> list[int]:
    """Remove the lock files no live process holds (left by a process that was SIGKILLed);
    returns their ports. A held one is skipped: its flock cannot be taken."""
    swept = []
    for f in LOCK_DIR.glob("*.lock") if LOCK_DIR.exists() else []:
        if not f.stem.isdigit() or int(f.stem) in _held:
            continue
        fd = os.open(f, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        else:
            f.unlink(missing_ok=True)
            swept.append(int(f.stem))
        finally:
            os.close(fd)
    return swept


@atexit.register
def _release_all() -> None:
    for port in list(_held):
        release(port)


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
