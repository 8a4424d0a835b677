"""The commit fence MLflow runs in (``services/mlflow/deadline.py``), on the stack's real Postgres:
once armed, a COMMIT that reaches Postgres after the commit deadline (less the time kept for the
commit itself) is not applied, because Postgres itself ends the transaction's session when that
moment passes with no COMMIT; one that arrives in time is. (The fence's other half, a write
already late when it would commit, is proved against the real MLflow in
``suites/faults/test_commit_fence.py``.)"""

import time
import uuid

import psycopg
import pytest
import sqlalchemy
from flask import Flask
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from harness.wait import wait_until
from services.mlflow import deadline

pytestmark = pytest.mark.integration


@pytest.fixture
def scratch(pg_dsn):
    """An engine on the api's database, a table of its own, and a Flask app with the fences."""
    table = f"fence_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (x int)")
    engine = create_engine(pg_dsn.replace("postgresql://", "postgresql+psycopg://", 1), poolclass=sqlalchemy.NullPool)
    app = Flask("fenced")
    deadline.install(app)
    yield engine, table, app
    engine.dispose()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '5s'")  # a session a failed test left open must not hang the run
        conn.execute(f"DROP TABLE {table}")


def rows(pg_dsn: str, table: str) -> int:
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def alive(pg_dsn: str, pid: int) -> bool:
    with psycopg.connect(pg_dsn) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == 1


def test_a_commit_that_reaches_postgres_after_the_deadline_is_not_applied(pg_dsn, scratch):
    engine, table, app = scratch
    by = time.time() + deadline.COMMIT_TIME + 0.5  # armed for the COMMIT to arrive within ~0.5 s
    with app.test_request_context("/x", method="POST", headers={"X-Commit-Deadline": f"{by:.3f}"}):
        app.preprocess_request()
        with Session(engine) as session:
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            session.execute(text(f"INSERT INTO {table} VALUES (1)"))
            deadline.commit_fence(session)  # armed
            # the COMMIT is late (held up on the way): Postgres ends the session at the deadline
            wait_until(
                lambda: alive(pg_dsn, pid), until=lambda up: not up, timeout=5, what="Postgres to end the session"
            )
            assert time.time() >= by - deadline.COMMIT_TIME - 0.05, "the session ended before its deadline"
            with pytest.raises(sqlalchemy.exc.DBAPIError, match="idle-in-transaction timeout"):
                session.commit()
    assert rows(pg_dsn, table) == 0


def test_a_commit_in_time_is_applied_and_a_late_one_is_refused_before_it_is_sent(pg_dsn, scratch):
    engine, table, app = scratch
    with app.test_request_context("/x", method="POST", headers={"X-Commit-Deadline": f"{time.time() + 5:.3f}"}):
        app.preprocess_request()
        with Session(engine) as session:
            session.execute(text(f"INSERT INTO {table} VALUES (1)"))
            session.commit()
    with app.test_request_context("/x", method="POST", headers={"X-Commit-Deadline": f"{time.time() - 0.01:.3f}"}):
        app.preprocess_request()
        with Session(engine) as session:
            session.execute(text(f"INSERT INTO {table} VALUES (2)"))
            with pytest.raises(deadline.CommitTooLate):
                session.commit()
    with app.test_request_context("/x", method="GET", headers={"X-Commit-Deadline": f"{time.time() - 0.01:.3f}"}):
        app.preprocess_request()
        with Session(engine) as session:  # a GET writes nothing: no fence
            session.execute(text(f"INSERT INTO {table} VALUES (3)"))
            session.commit()
    assert rows(pg_dsn, table) == 2


def test_a_commit_with_no_time_left_rolls_back_cleanly_however_slow_the_client(pg_dsn, scratch):
    """No time left: the transaction is not armed, so a loaded client's ROLLBACK (50 ms later here)
    still finds its session; with a 1 ms timeout armed, Postgres ended the session first, the
    rollback failed and MLflow answered 500 instead of 504 (seen under a loaded CI run)."""
    engine, table, app = scratch
    with app.test_request_context("/x", method="POST", headers={"X-Commit-Deadline": f"{time.time() - 0.01:.3f}"}):
        app.preprocess_request()
        with Session(engine) as session:
            session.execute(text(f"INSERT INTO {table} VALUES (4)"))
            with pytest.raises(deadline.CommitTooLate):
                session.commit()
            time.sleep(0.05)  # the client is slow to send its ROLLBACK (a loaded machine), not a wait for a state
            session.rollback()
            assert session.execute(text("SELECT 1")).scalar_one() == 1  # the same session, still usable
    assert rows(pg_dsn, table) == 0
