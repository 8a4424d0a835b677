"""Sessions, their registry, and the reaper.

A session is one harness process's ownership of what it starts (a pytest process, an xdist
worker, ``python -m harness up``). Everything a session starts carries its id and its owner (the
process that holds it, as ``<pid>:<start time>``): child processes have ``HARNESS_SESSION_ID`` and
``HARNESS_SESSION_OWNER`` in their environment (inherited by grandchildren such as Postgres
backends and MLflow workers), temp dirs are named ``harness-<id>-*``, containers, networks and
volumes carry the labels ``harness.session-id`` and ``harness.session-owner``. A session registers
itself in ``<tmp>/harness-sessions/<id>.json`` with its owner; the reaper removes whatever belongs
to sessions whose owner is gone (or to all sessions, forced).

What a process or container carries decides, not only this run's registry: a run with another
temp dir (``TMPDIR``) registers elsewhere, and its processes are still live while their owner
runs. A session id is ``h`` and 8 hex digits; anything else found in an environment or a label is
not ours, and is never used in a path or a pattern.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import psutil

from harness import ports

ENV_VAR = "HARNESS_SESSION_ID"
OWNER_VAR = "HARNESS_SESSION_OWNER"
LABEL = "harness.session-id"
OWNER_LABEL = "harness.session-owner"
SESSION_ID = re.compile(r"h[0-9a-f]{8}")
TMP = Path(tempfile.gettempdir())
REGISTRY = TMP / "harness-sessions"


def _start_time(pid: int) -> str | None:
    """The process's start time (what tells it from a later one with the same pid); None once it
    has exited, including as a zombie its parent has not waited for yet (a script's background
    `harness up` stays one until the script reaps it: `down` waited 60 s for such an owner)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        # seconds after boot, not a wall-clock time: psutil derives create_time() from the boot
        # time, which moves when the clock is set (NTP, a resumed VM); a live owner whose mark
        # moved would be taken for dead and its run killed. The difference does not move.
        return f"{proc.create_time() - psutil.boot_time():.2f}"
    except psutil.Error:
        return None


def session_labels(labels: dict) -> dict[str, str]:
    """The session's labels among ``labels`` (a network's, for the containers started on it)."""
    return {k: v for k, v in labels.items() if k in (LABEL, OWNER_LABEL)}


def valid_id(value: object) -> bool:
    """Whether ``value`` is a session id as sessions make them (never a path or a pattern)."""
    return isinstance(value, str) and SESSION_ID.fullmatch(value) is not None


def owner_mark(pid: int) -> str:
    """``<pid>:<start time>``: what tells a live owner from a later process with its pid."""
    return f"{pid}:{_start_time(pid)}"


def _mark_alive(mark: object) -> bool:
    """Whether the owner ``<pid>:<start time>`` still runs."""
    if not isinstance(mark, str) or ":" not in mark:
        return False
    pid, start = mark.split(":", 1)
    return pid.isdigit() and start != "None" and _start_time(int(pid)) == start


@dataclass
class Session:
    """This process's session: an id, its temp dirs, and its registry entry."""

    id: str = field(default_factory=lambda: "h" + secrets.token_hex(4))
    dirs: list[Path] = field(default_factory=list)
    kind: str = "run"  # "up": a stack started by `python -m harness up`, which `down` stops
    info: dict = field(default_factory=dict)  # what `status` and `logs` read (an `up`'s services)

    def __post_init__(self) -> None:
        if not valid_id(self.id):
            raise ValueError(f"a session id is h and 8 hex digits, got {self.id!r}")
        self.owner = owner_mark(os.getpid())
        REGISTRY.mkdir(mode=0o755, exist_ok=True)
        self._write()

    def env(self) -> dict[str, str]:
        """What every child process of the session carries in its environment."""
        return {ENV_VAR: self.id, OWNER_VAR: self.owner}

    def labels(self) -> dict[str, str]:
        """What every container, network and volume of the session carries."""
        return {LABEL: self.id, OWNER_LABEL: self.owner}

    @property
    def registry_file(self) -> Path:
        return REGISTRY / f"{self.id}.json"

    def _write(self) -> None:
        data = {
            "session_id": self.id,
            "owner_pid": os.getpid(),
            "owner_start": _start_time(os.getpid()),
            "created": time.time(),
            "dirs": [str(d) for d in self.dirs],
            "kind": self.kind,
            "info": self.info,
        }
        tmp = self.registry_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(self.registry_file)

    def note(self, **info: object) -> None:
        """Keep ``info`` in the registry entry, for other processes to read (no secrets: the
        entry is readable by every user of the machine)."""
        self.info.update(info)
        self._write()

    def mkdtemp(self, purpose: str) -> Path:
        path = Path(tempfile.mkdtemp(prefix=f"harness-{self.id}-{purpose}-"))
        self.dirs.append(path)
        self._write()
        return path

    def remove_dir(self, path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)
        if path in self.dirs:
            self.dirs.remove(path)
            self._write()

    def close(self) -> None:
        for d in list(self.dirs):
            self.remove_dir(d)
        self.registry_file.unlink(missing_ok=True)


@dataclass
class ReapReport:
    sessions: list[str] = field(default_factory=list)
    processes: list[int] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # stale port lock files removed

    def as_json(self) -> dict:
        return self.__dict__.copy()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie has exited: it only waits to be reaped)."""
    return _start_time(pid) is not None


def _owner_alive(entry: dict) -> bool:
    pid = entry.get("owner_pid")
    return isinstance(pid, int) and _start_time(pid) is not None and _start_time(pid) == entry.get("owner_start")


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, process group) of every process (psutil: the same on every system it
    supports; reading /proc by hand was as fast, 2 ms against 3 for 70 processes, and Linux's only)."""
    table = {}
    for proc in psutil.process_iter(["ppid"]):
        try:
            table[proc.pid] = (proc.info["ppid"], os.getpgid(proc.pid))
        except (ProcessLookupError, psutil.Error):
            continue  # exited meanwhile
    return table


def tree(roots: set[int], table: dict[int, tuple[int, int]] | None = None) -> set[int]:
    """``roots``, their descendants, and the members of process groups they lead. Postgres's
    children call setsid() and overwrite their environment with process titles, so only the
    parent links find them."""
    table = table if table is not None else process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, pgrp) in table.items():
        children.setdefault(ppid, []).append(pid)
        if pgrp != pid:
            children.setdefault(pgrp, []).append(pid)
    found, todo = set(), [r for r in roots if r in table]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def processes_of(session_ids: set[str] | None) -> list[int]:
    """Pids whose environment carries HARNESS_SESSION_ID in ``session_ids`` (any session id when None),
    with their descendants and process-group members."""
    me = os.getpid()
    table = process_table()
    marked = set()
    for pid in table:
        if pid == me:
            continue
        rid = _session_id_of(pid)
        if rid is not None and (session_ids is None or rid in session_ids):
            marked.add(pid)
    found = tree(marked, table)
    found.discard(me)
    return sorted(found)


def stop_up_sessions(timeout: float = 60.0, only: set[str] | None = None) -> list[str]:
    """Stop every live `python -m harness up` as Ctrl-C would (SIGTERM: its teardown stops the stack
    and removes its dirs), waiting up to ``timeout`` seconds for each; returns their session ids.
    An owner that does not exit in time is left to the reaper (its processes are killed then)."""
    from harness.errors import WaitTimeout
    from harness.wait import wait_until

    stopped = []
    for entry in live_up_sessions():
        if only and entry.get("session_id") not in only:
            continue
        try:
            os.kill(entry["owner_pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        try:
            wait_until(
                partial(_owner_alive, entry),
                until=lambda alive: not alive,
                timeout=timeout,
                interval=0.2,
                what=f"`harness up` (pid {entry['owner_pid']}) to stop its stack after SIGTERM",
            )
        except WaitTimeout:
            pass  # the reaper kills what is left
        stopped.append(entry["session_id"])
    return stopped


def live_up_sessions() -> list[dict]:
    """The registry entries of every `harness up` whose owner still runs, oldest first."""
    entries = []
    for f in sorted(REGISTRY.glob("*.json")) if REGISTRY.exists() else []:
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if valid_id(f.stem) and entry.get("session_id") == f.stem and entry.get("kind") == "up" and _owner_alive(entry):
            entries.append(entry)
    return sorted(entries, key=lambda e: e.get("created", 0))


def stale_sessions(force: bool = False, exclude: Collection[str] = frozenset()) -> list[str]:
    if not REGISTRY.exists():
        return []
    out = []
    for f in REGISTRY.glob("*.json"):
        if not valid_id(f.stem):
            continue  # not a file a session wrote
        try:
            entry = json.loads(f.read_text())
        except (OSError, ValueError):
            out.append(f.stem)
            continue
        if f.stem in exclude:
            continue
        if force or entry.get("session_id") != f.stem or not _owner_alive(entry):
            out.append(f.stem)
    return out


def reap(
    force: bool = False, exclude: Collection[str] = frozenset(), docker_client: object | None = None
) -> ReapReport:
    """Remove what belongs to dead sessions (all sessions but ``exclude`` when ``force``)."""
    report = ReapReport()
    gone = set(stale_sessions(force, exclude))
    # processes of sessions whose registry vanished (e.g. the owner was SIGKILLed mid-write). The
    # processes are scanned first and the registry read after: a session registers before it starts
    # a process, so one that registers during the scan is seen as live, never reaped as an orphan
    # (the other order killed a test run beside it, the whole process group of its owner)
    # A process whose session is in no registry here is an orphan only if the owner it carries has
    # gone too: a run with another TMPDIR registers in another folder, and its processes are live.
    marked = {pid: _marks_of(pid) for pid in processes_of(None)}
    live_ids = {f.stem for f in REGISTRY.glob("*.json")} if REGISTRY.exists() else set()
    orphans: set[str] = set()
    for rid, owner in marked.values():
        if rid and rid not in exclude and (rid in gone or (rid not in live_ids and not _mark_alive(owner))):
            orphans.add(rid)
    gone |= orphans
    if gone:
        report.processes += _kill(processes_of(gone))
    for rid in sorted(gone):
        for d in TMP.glob(f"harness-{rid}-*"):
            shutil.rmtree(d, ignore_errors=True)
            report.dirs.append(str(d))
        _remove_log(REGISTRY / f"{rid}.json")
        (REGISTRY / f"{rid}.json").unlink(missing_ok=True)
    report.sessions = sorted(gone)
    report.ports = ports.sweep()
    if docker_client is not None:
        _reap_docker(docker_client, gone if not force else None, exclude, report)
    return report


def _remove_log(entry_file: Path) -> None:
    """A detached `up`'s log (``harness-up-*.log`` in the temp dir), named by its registry entry."""
    try:
        log = Path(json.loads(entry_file.read_text()).get("info", {}).get("log") or "")
    except (OSError, ValueError, AttributeError):
        return
    if log.name.startswith("harness-up-") and log.suffix == ".log" and log.parent == TMP:
        log.unlink(missing_ok=True)


def _kill(pids: list[int]) -> list[int]:
    """SIGKILL (after SIGCONT, so frozen ones die too); returns the pids that were there."""
    killed = []
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    return killed


def reap_session(session_id: str) -> ReapReport:
    """Remove one session's processes and dirs, whatever state its owner is in."""
    if not valid_id(session_id):
        raise ValueError(f"a session id is h and 8 hex digits, got {session_id!r}")
    report = ReapReport(sessions=[session_id], processes=_kill(processes_of({session_id})))
    for d in TMP.glob(f"harness-{session_id}-*"):
        shutil.rmtree(d, ignore_errors=True)
        report.dirs.append(str(d))
    (REGISTRY / f"{session_id}.json").unlink(missing_ok=True)
    return report


def _marks_of(pid: int) -> tuple[str | None, str | None]:
    """The session id (None unless a valid one) and the owner a process carries in its environment."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:  # gone, or another user's
        return None, None
    rid = env.get(ENV_VAR)
    return (rid if valid_id(rid) else None), env.get(OWNER_VAR)


def _session_id_of(pid: int) -> str | None:
    return _marks_of(pid)[0]


def _reap_docker(client, gone: set[str] | None, exclude: Collection[str], report: ReapReport) -> None:
    """Containers, networks, volumes labelled with a reaped session id (any session id when forced)."""

    def wanted(labels: dict | None) -> bool:
        labels = labels or {}
        rid = labels.get(LABEL) or None  # empty: a compose project started by hand
        project = labels.get("com.docker.compose.project", "")
        if rid is None and project.startswith("harness-h"):
            rid = project.removeprefix("harness-")  # the compose project of a session
        if not valid_id(rid) or rid in exclude:
            return False
        if gone is None or rid in gone:
            return True
        return not (REGISTRY / f"{rid}.json").exists() and not _mark_alive(labels.get(OWNER_LABEL))

    for key in (LABEL, "com.docker.compose.project"):
        for c in client.containers.list(all=True, filters={"label": key}):
            if wanted(c.labels):
                c.remove(force=True, v=True)
                report.containers.append(c.name)
    for key in (LABEL, "com.docker.compose.project"):
        for n in client.networks.list(filters={"label": key}):
            if wanted(n.attrs.get("Labels")):
                n.remove()
                report.networks.append(n.name)
        for v in client.volumes.list(filters={"label": key}):
            if wanted(v.attrs.get("Labels")):
                v.remove(force=True)
                report.volumes.append(v.name)
