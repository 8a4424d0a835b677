"""Free loopback ports that parallel runs (xdist workers, two pytest processes) do not share.

Binding port 0 picks a free port, but two processes can be handed the same one between the
probe and the child's bind. Each pick is therefore also claimed with an exclusive lock file
held for the life of the process, so a concurrent run skips it.
"""

from __future__ import annotations

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
        fd = os.open(LOCK_DIR / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0
