"""MLflow's settle time is a bound, not a hope: the api's claim lease covers MLflow carrying out a
create for ``API_MLFLOW_SETTLE_TIME`` after the api stopped waiting, and MLflow commits nothing of
a call past its ``X-Commit-Deadline`` (``services/mlflow/deadline.py``).

The hole it closes: the request fence stops MLflow *starting* a late call, but a create that
started in time and was then held up on the way to MLflow's database (a slow or held statement, a
paused worker) committed whenever it got there. A retry that had waited out the lease, searched,
found nothing and made its own run then had company: two runs for one key. Here the real MLflow's
``INSERT INTO runs`` is held in the mlflow->postgres proxy past the call's commit deadline."""

import concurrent.futures
import time
import uuid

import httpx
import pytest

from harness.faults.writer import tagged_runs
from harness.stack.toxics import Hold
from harness.wait import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.disruptive]
INSERT_RUN = b"INSERT INTO runs"
API = "/api/2.0/mlflow"


def create_held(stack, budgets, commit_in: float, release_after: float) -> tuple[httpx.Response, dict]:
    """A create (its tag: a fresh id) whose INSERT is held until ``release_after`` seconds after it
    was sent, with a commit deadline ``commit_in`` seconds after; its answer, and the tagged runs
    MLflow holds afterwards."""
    mlflow, proxy = stack.url("mlflow"), stack.proxies["mlflow->postgres"]
    experiment, tag = f"fence-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with httpx.Client(timeout=budgets.http + release_after) as client:
        made = client.post(f"{mlflow}{API}/experiments/create", json={"name": experiment})
        exp_id = made.raise_for_status().json()["experiment_id"]
        with concurrent.futures.ThreadPoolExecutor(1) as pool, proxy.toxic(Hold(match=INSERT_RUN)) as held:
            sent = time.time()
            headers = {"X-Request-Deadline": f"{sent + 5:.3f}", "X-Commit-Deadline": f"{sent + commit_in:.3f}"}
            body = {"experiment_id": exp_id, "tags": [{"key": "api_run_id", "value": tag}]}
            answer = pool.submit(client.post, f"{mlflow}{API}/runs/create", json=body, headers=headers)
            wait_until(lambda: held.applied, until=lambda n: n == 1, timeout=budgets.http, what="the INSERT held")
            wait_until(
                time.time,
                until=lambda now: now >= sent + release_after,
                interval=0.05,
                timeout=release_after + 1,
                what=f"{release_after} s after the create was sent",
            )
        response = answer.result(timeout=budgets.http)
        return response, tagged_runs(client, mlflow, experiment).get(tag, [])


def test_a_create_held_past_its_commit_deadline_makes_no_run(fault_stack, budgets):
    response, runs = create_held(fault_stack, budgets, commit_in=2.0, release_after=2.5)
    assert response.status_code == 504 and response.json()["error_code"] == "DEADLINE_EXCEEDED", response.text
    assert runs == [], "the held create committed after its commit deadline"


def test_a_create_held_within_its_commit_deadline_is_made(fault_stack, budgets):
    response, runs = create_held(fault_stack, budgets, commit_in=4.0, release_after=1.0)
    assert response.status_code == 200, response.text
    assert [r["info"]["run_id"] for r in runs] == [response.json()["run"]["info"]["run_id"]]
