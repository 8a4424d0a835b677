"""Child processes the harness owns, and how the harness itself reacts to signals.

Each child runs in its own process group (so kill, freeze and resume reach its workers and
backends), carries HARNESS_SESSION_ID (so the reaper finds it after a crash), gets SIGKILL if
the harness dies (PR_SET_PDEATHSIG), and writes its log into a file of its working directory.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
import signal
import subprocess
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError, ServiceFailed
from harness.paths import project
from harness.ports import release
from harness.session import Session, tree
from harness.wait import wait_until

_PR_SET_PDEATHSIG = 1
# Every child is forked on this one thread. PR_SET_PDEATHSIG fires when the *thread* that forked
# the child exits, not the process (prctl(2)): a service restarted on a short-lived thread (a
# fault held on a thread of its own) was SIGKILLed when that thread ended. This thread lives as
# long as the harness, so "the parent died" means the harness died.
_FORKER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="harness-forker")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def python_env(workdir: Path) -> dict[str, str]:
    """A clean environment for a Python child of the harness: the project importable, temp files in ``workdir``."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "HOME", "SSL_CERT_FILE")}
    return {**keep, "PYTHONPATH": project().pythonpath, "PYTHONUNBUFFERED": "1", "TMPDIR": str(workdir)}


class ChildProcess:
    """A child process the session owns: its own process group, the session id in its environment,
    SIGKILL if the harness dies, its output in a log file; stop, kill, freeze and resume reach its
    whole tree."""

    name: str
    url: str
    host_port: int

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str],
        cwd: Path,
        url: str,
        session: Session,
        user: str | None = None,
        stop_signal: int = signal.SIGTERM,
        ports: tuple[int, ...] = (),
    ) -> None:
        self.name, self.argv, self.env, self.cwd, self.url = name, argv, env, cwd, url
        self.session, self.user, self.stop_signal, self.ports = session, user, stop_signal, ports
        self.log_path = cwd / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.host_port = ports[0] if ports else 0
        self.paused = False
        self.starts = 0

    @property
    def ident(self) -> str:
        return str(self.proc.pid) if self.proc else "-"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        if self.is_running():
            raise HarnessError(
                f"{self.name} stopped before start", f"pid {self.pid} running", "call stop() or kill() first"
            )
        env = {**self.env, **self.session.env()}
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it; closed below
        try:
            self.proc = _FORKER.submit(
                subprocess.Popen,
                self.argv,
                env=env,
                cwd=self.cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
                user=self.user,
                preexec_fn=_die_with_parent,
            ).result()
        finally:
            log.close()
        self.paused = False
        self.starts += 1

    @property
    def log_ref(self) -> str:
        return str(self.log_path)

    def logs(self, tail: int = 200) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        if code is not None:
            return f"exited({code})"
        return "paused" if self.paused else "running"

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def ensure_running(self, allow_unhealthy: bool = False) -> None:
        """Fatal to waits: a child that exited will not become ready."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceFailed(
                f"{self.name} running",
                f"it exited with code {self.proc.returncode}",
                f"its log ends with:\n{self.logs(30)}",
            )

    def _group(self, signum: int) -> None:
        """Signal the whole tree: the leader first (so it forks no new child), then the rest."""
        if self.proc is None:
            return
        members = tree({self.proc.pid})
        for pid in [self.proc.pid] + sorted(members - {self.proc.pid}):
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        self._group(signal.SIGCONT)
        self._group(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait()
        self.paused = False

    def pause(self) -> None:
        self._group(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self._group(signal.SIGCONT)
        self.paused = False

    def stop(self, grace: float) -> int | None:
        if self.proc is None:
            return None
        members = tree({self.proc.pid})
        if self.proc.poll() is None:
            if self.paused:
                self.resume()
            self.signal(self.stop_signal)
            try:
                wait_until(
                    self.proc.poll,
                    until=lambda code: code is not None,
                    timeout=grace,
                    interval=0.05,
                    what=f"{self.name} to exit after {signal.Signals(self.stop_signal).name}",
                )
            except HarnessError:
                pass
        self._group(signal.SIGKILL)
        for pid in members - {self.proc.pid}:  # stragglers reparented away from a dead leader
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc.wait()
        return self.proc.returncode

    def close(self, grace: float) -> None:
        self.stop(grace)
        for port in self.ports:
            release(port)


def terminate_as_interrupt() -> None:
    """SIGTERM behaves like Ctrl-C from now on, so teardown runs either way; and Ctrl-C works even
    where a shell started us with SIGINT ignored (any background job of a script: `make test &`)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def delayed(argv: list[str], seconds: float) -> list[str]:
    """Fault "slow start": the command starts only after ``seconds`` (the process exists meanwhile)."""
    if not seconds:
        return argv
    return ["sh", "-c", f'sleep {seconds:g}; exec "$@"', "slow-start", *argv]


def run_lines(
    argv: list[str], env: dict | None, timeout: float, on_line: Callable[[str], None], cwd: Path | None = None
) -> tuple[int, str]:
    """Run ``argv``, passing each output line (stdout and stderr) to ``on_line`` (a progress step);
    returns the exit code and the output's tail. Killed after ``timeout`` seconds."""
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    tail: deque[str] = deque(maxlen=40)
    assert proc.stdout is not None  # stdout=PIPE
    try:
        for line in proc.stdout:
            tail.append(line)
            on_line(line)
        return proc.wait(), "".join(tail)
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
