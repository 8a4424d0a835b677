"""The local runtime's operations on a real Postgres: start, freeze, resume, kill, restart, stop."""

import os
import threading
from pathlib import Path

import psycopg
import pytest

from harness.budgets import Budgets
from harness.errors import WaitTimeout
from harness.session import processes_of
from harness.wait import wait_until
from pytest_harness.stack import local_postgres

pytestmark = [pytest.mark.harness, pytest.mark.disruptive]


@pytest.fixture
def pg():
    with local_postgres() as (svc, session, _):
        yield svc, session


def query(svc, timeout=1):
    with psycopg.connect(f"{svc.url}/postgres", connect_timeout=timeout) as conn:
        return conn.execute("SELECT 1").fetchone()[0]


def test_children_carry_the_session_id_and_run_unprivileged(pg):
    svc, session = pg
    pids = processes_of({session.id})
    assert svc.pid in pids and len(pids) > 1  # postmaster and its backends/auxiliaries
    if os.geteuid() == 0:
        assert Path(f"/proc/{svc.pid}").stat().st_uid != 0


def test_pause_freezes_and_resume_thaws(pg):
    svc, _ = pg
    svc.pause()
    assert svc.status() == "paused"
    with pytest.raises(WaitTimeout):
        wait_until(lambda: query(svc), timeout=1.5, interval=0.5, what="a frozen postgres to answer")
    svc.resume()
    assert wait_until(lambda: query(svc), timeout=10, what="postgres after resume") == 1


def test_kill_then_start_keeps_data_and_port(pg):
    svc, _ = pg
    with psycopg.connect(f"{svc.url}/postgres", autocommit=True) as conn:
        conn.execute("CREATE TABLE keep(x int)")
        conn.execute("INSERT INTO keep VALUES (42)")
    port = svc.host_port
    svc.kill()
    assert svc.status() == "exited(-9)"
    svc.start()
    wait_until(lambda: query(svc), timeout=30, what="postgres after restart")
    assert svc.host_port == port
    with psycopg.connect(f"{svc.url}/postgres") as conn:
        assert conn.execute("SELECT x FROM keep").fetchone()[0] == 42


def test_stop_is_graceful_and_leaves_no_process(pg):
    svc, session = pg
    assert svc.stop(Budgets().stop) == 0
    assert processes_of({session.id}) == []


def test_a_child_started_from_a_thread_outlives_the_thread(tmp_path):
    """PR_SET_PDEATHSIG fires when the forking *thread* exits, not the process: a service the
    nemesis restarts from a fault's thread was SIGKILLed when that thread ended (Postgres exited
    -9 a moment after its restart). Children are forked from one thread that lives as long as
    the harness."""
    from harness.process import ChildProcess
    from harness.session import Session
    from harness.wait import wait_until

    session = Session()
    child = ChildProcess(
        "sleeper", ["sleep", "60"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, url="", session=session
    )
    try:
        starter = threading.Thread(target=child.start)
        starter.start()
        starter.join()
        with pytest.raises(WaitTimeout):  # it must still run a second after its starting thread ended
            wait_until(child.status, until=lambda s: s != "running", timeout=1.0, what="the child to die")
        assert child.status() == "running"
    finally:
        child.close(1)
        session.close()
