"""Nothing leaks: after SIGINT or SIGTERM to a pytest that holds a stack, and from a crashed run."""

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.errors import ServiceFailed
from harness.ports import free_port, is_listening
from harness.session import (
    ENV_VAR,
    REGISTRY,
    TMP,
    Session,
    alive,
    process_table,
    processes_of,
    reap,
    reap_session,
    tree,
)
from harness.wait import wait_until
from pytest_harness.stack import local_postgres
from tests import REPO

pytestmark = [pytest.mark.harness, pytest.mark.slow]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# In the full proof, not the pull-request stage (docs/pipeline.md, "Stages"): each case starts a
# pytest session with a stack of its own, about 20 s.
@pytest.mark.proof
@pytest.mark.parametrize(
    "signum, background",
    [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["SIGINT", "SIGTERM", "SIGINT-to-a-background-job"],
)
def test_interrupted_pytest_leaves_nothing(tmp_path, signum, background, budgets):
    """A background job of a script starts with SIGINT ignored (POSIX shells do that); the harness
    must stop on it all the same."""
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/cases/case_stack_blocks.py",
            "-p",
            "no:html",
            "-q",
            "--runtime",
            "local",
            f"--junitxml={tmp_path / 'j.xml'}",
            "-o",
            "timeout=180",
        ],
        cwd=REPO,
        env={**os.environ, "CASE_MARKER": str(marker)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint if background else None,
    )
    try:

        def stack_up() -> bool:
            if child.poll() is not None:
                raise ServiceFailed(
                    "the child pytest to hold its stack",
                    f"it exited with {child.returncode}",
                    child.stdout.read()[-2000:],
                )
            return marker.exists() and marker.read_text().count("\n") == 2

        wait_until(stack_up, timeout=budgets.mlflow_ready, what="the child pytest's stack to be up")
        run_id, pids = marker.read_text().splitlines()
        assert processes_of({run_id}), "the stack's processes carry the run id"
        child.send_signal(signum)
        out, _ = child.communicate(timeout=budgets.stop * 3)
    finally:
        if child.poll() is None:
            child.kill()  # the test failed: leave nothing of the child's session behind either
            if marker.exists():
                reap_session(marker.read_text().split("\n", 1)[0])
    assert processes_of({run_id}) == [], out
    assert list(TMP.glob(f"harness-{run_id}-*")) == [], out
    assert not (REGISTRY / f"{run_id}.json").exists()
    for pid in pids.split():
        assert not Path(f"/proc/{pid}").exists()


def test_reaper_removes_what_a_crashed_run_left(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    rid = "hdeadbeef"
    REGISTRY.mkdir(exist_ok=True)
    (REGISTRY / f"{rid}.json").write_text(
        json.dumps({"session_id": rid, "owner_pid": int(dead), "owner_start": "0", "dirs": []})
    )
    leftover_dir = Path(TMP, f"harness-{rid}-postgres-x")
    leftover_dir.mkdir()
    orphan = subprocess.Popen(["sleep", "600"], env={**os.environ, ENV_VAR: rid}, start_new_session=True)
    alive = Session()  # a live session in this process: the reaper must not touch it
    own_dir = alive.mkdtemp("keep")
    try:
        reap()  # (a concurrent session's reaper may get there first: judge the end state)
        assert orphan.wait(timeout=5) == -9
        assert not leftover_dir.exists() and not (REGISTRY / f"{rid}.json").exists()
        assert own_dir.exists() and alive.registry_file.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        alive.close()


def test_a_stopped_stack_frees_its_ports(freed_ports):
    for port in freed_ports:
        assert not is_listening(port)


@pytest.fixture
def freed_ports():
    """Start and stop a Postgres; return the port it held."""
    with local_postgres() as (svc, _, _):
        assert is_listening(svc.host_port)
    return [svc.host_port]


@pytest.mark.parametrize("workers", [0, 2], ids=["standalone", "two-workers"])
def test_interrupted_load_run_leaves_no_locust_behind(tmp_path, workers, budgets):
    """SIGTERM to `python -m harness load` mid-run: Locust and its workers go."""
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()  # answers 501: load, not health
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "load",
            "--profile",
            "smoke",
            "--target-url",
            f"http://127.0.0.1:{port}",
            "--lb-timeout",
            "5",
            "--workers",
            str(workers),
            "--reports-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def locusts() -> set[int]:
            if cli.poll() is not None:
                raise ServiceFailed(
                    "the load run to be running", f"it exited with {cli.returncode}", cli.stdout.read()[-2000:]
                )
            table = process_table()
            return {
                p for p in tree({cli.pid}, table) - {cli.pid} if b"locust" in Path(f"/proc/{p}/cmdline").read_bytes()
            }

        started = wait_until(
            locusts,
            until=lambda found: len(found) == workers + 1,
            timeout=budgets.http * 6,
            what="Locust and its workers to run",
        )
        cli.send_signal(signal.SIGTERM)
        out, _ = cli.communicate(timeout=budgets.stop * 3)
    finally:
        if cli.poll() is None:
            cli.kill()
        server.shutdown()
    assert cli.returncode == 130, out
    # SIGKILLed stragglers are gone a moment later, not at once; a zombie has exited (only its
    # new parent, this machine's init, has not reaped it yet)
    left = wait_until(
        lambda: [p for p in started if alive(p)],
        until=lambda pids: pids == [],
        timeout=budgets.stop,
        what="every Locust process of the run to be gone",
    )
    assert left == [], out
    assert "interrupted; everything it started was stopped" in out


def test_the_reaper_never_takes_a_session_that_registers_while_it_scans(tmp_path, monkeypatch):
    """A run that registers its session while another run's reaper scans the processes (its child
    already started) is live: the reaper must read the registry after the scan, not before."""
    import harness.session as session_module

    registry = tmp_path / "sessions"
    registry.mkdir()
    monkeypatch.setattr(session_module, "REGISTRY", registry)
    monkeypatch.setattr(session_module, "TMP", tmp_path)
    child, new = 4_000_000, "h0000abcd"  # a pid no process has; a session id

    def scan(ids):
        if ids is None:  # the scan of every process: the new run registers meanwhile
            (registry / f"{new}.json").write_text(json.dumps({"session_id": new, "owner_pid": os.getpid()}))
            return [child]
        return [child] if new in ids else []

    killed: list[list[int]] = []
    monkeypatch.setattr(session_module, "processes_of", scan)
    monkeypatch.setattr(session_module, "_marks_of", lambda pid: (new, None) if pid == child else (None, None))
    monkeypatch.setattr(session_module, "_kill", lambda pids: killed.append(pids) or pids)
    monkeypatch.setattr(session_module.ports, "sweep", lambda: [])
    report = session_module.reap()
    assert killed == [] and report.sessions == [], (killed, report)
    assert (registry / f"{new}.json").exists()


# Another run: its session, a temp dir and a child carrying its marks, until its stdin closes.
OTHER_RUN = """
import os, subprocess, sys
from harness.session import Session
s = Session()
d = s.mkdtemp("keep")
child = subprocess.Popen(["sleep", "300"], env={**os.environ, **s.env()})
print(child.pid, d, flush=True)
sys.stdin.read()
child.kill(); child.wait(); s.close()
"""


def test_a_run_with_another_temp_dir_is_live_to_the_reaper(tmp_path):
    """A run with another TMPDIR registers in another folder: what its processes carry (their
    owner, alive) says they are live, not the absence of a registry entry here."""
    other_tmp = tmp_path / "other-tmp"
    other_tmp.mkdir()
    run = subprocess.Popen(
        [sys.executable, "-c", OTHER_RUN],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(other_tmp)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pid, workdir = run.stdout.readline().split()
        assert Path(workdir).is_relative_to(other_tmp)
        reap()  # what the start of every run here does
        assert alive(int(pid)), "the reaper killed a live run's child: it took the run for an orphan"
        assert Path(workdir).exists()
    finally:
        run.stdin.close()
        assert run.wait(timeout=20) == 0


def test_a_session_id_that_is_not_ours_is_never_a_path_or_a_pattern(tmp_path, monkeypatch):
    """An id in some process's environment that no session made (``*``, ``../x``) is not ours: the
    reaper neither kills that process nor globs or joins a path with it."""
    import harness.session as session_module

    monkeypatch.setattr(session_module, "TMP", tmp_path)  # the reaper's dirs: contained here
    live = Session()
    kept = tmp_path / f"harness-{live.id}-keep"
    kept.mkdir()
    strangers = [
        subprocess.Popen(["sleep", "300"], env={**os.environ, ENV_VAR: bad}, start_new_session=True)
        for bad in ("*", "../x", "h*")
    ]
    try:
        report = session_module.reap()
        assert kept.exists(), "a live session's dir was removed by a pattern made from a stranger's id"
        assert all(p.poll() is None for p in strangers), "the reaper killed a process that is not ours"
        assert not {"*", "../x", "h*"} & set(report.sessions)
    finally:
        for p in strangers:
            p.kill()
            p.wait()
        live.close()
    with pytest.raises(ValueError, match="h and 8 hex digits"):
        reap_session("*")


# One run as every run starts: reap, register, start a child, reap again (a run beside it starts
# meanwhile); report each round in which its own child or dir was lost.
ROUNDS = """
import json, os, subprocess, sys
from harness.session import Session, alive, reap
lost = []
for i in range(int(sys.argv[1])):
    reap()
    s = Session()
    d = s.mkdtemp("work")
    child = subprocess.Popen(["sleep", "60"], env={**os.environ, **s.env()})
    reap()
    if not alive(child.pid) or not d.exists():
        lost.append(i)
    child.kill(); child.wait(); s.close()
print(json.dumps(lost))
"""


@pytest.mark.parametrize("tmpdirs", ["same", "different"])
def test_two_runs_side_by_side_reap_repeatedly_and_neither_loses_anything(tmp_path, tmpdirs):
    rounds = 100
    runs = []
    for i in range(2):
        env = dict(os.environ)
        if tmpdirs == "different":
            (tmp_path / f"tmp{i}").mkdir()
            env["TMPDIR"] = str(tmp_path / f"tmp{i}")
        cmd = [sys.executable, "-c", ROUNDS, str(rounds)]
        runs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True))
    outs = [r.communicate(timeout=120)[0] for r in runs]
    assert [r.returncode for r in runs] == [0, 0], outs
    assert [json.loads(o.splitlines()[-1]) for o in outs] == [[], []], "rounds in which a run lost its own"
