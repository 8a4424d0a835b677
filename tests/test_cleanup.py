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

from fixtures.stack import local_postgres
from harness.errors import ServiceFailed
from harness.paths import REPO
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
    child = 4_000_000  # a pid no process has

    def scan(ids):
        if ids is None:  # the scan of every process: the new run registers meanwhile
            (registry / "hnew.json").write_text(json.dumps({"session_id": "hnew", "owner_pid": os.getpid()}))
            return [child]
        return [child] if "hnew" in ids else []

    killed: list[list[int]] = []
    monkeypatch.setattr(session_module, "processes_of", scan)
    monkeypatch.setattr(session_module, "_session_id_of", lambda pid: "hnew" if pid == child else None)
    monkeypatch.setattr(session_module, "_kill", lambda pids: killed.append(pids) or pids)
    monkeypatch.setattr(session_module.ports, "sweep", lambda: [])
    report = session_module.reap()
    assert killed == [] and report.sessions == [], (killed, report)
    assert (registry / "hnew.json").exists()
