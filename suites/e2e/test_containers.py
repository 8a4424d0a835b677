"""The real images: container health status, the MLflow check's path, curl in the images,
the whole path api -> mlflow -> postgres behind containers, and the compose file."""

import httpx
import pytest

from harness.plan.dockerfile import service_healthcheck
from harness.session import reap
from harness.stack.compose import ComposeStack
from harness.wait import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.docker]
SERVICES = ("postgres", "mlflow", "api")


@pytest.mark.parametrize("name", SERVICES)
def test_image_reaches_healthy_within_its_start_period(docker_stack, name):
    svc = docker_stack.services[name]
    hc = service_healthcheck(name)
    assert svc.health() == "healthy", svc.health_log()
    # healthy_after counts from container start to the first "healthy" the harness saw
    assert svc.healthy_after is not None and svc.healthy_after <= max(hc.start_period, hc.interval) + hc.interval, (
        f"{name} healthy after {svc.healthy_after}s; start period {hc.start_period}s, interval {hc.interval}s"
    )


@pytest.mark.parametrize("name", [s for s in SERVICES if service_healthcheck(s).uses_curl])
def test_curl_exists_where_the_check_uses_it(docker_stack, name):
    code, out = docker_stack.services[name].raw.exec_run(["sh", "-c", "command -v curl"])
    assert code == 0 and out.strip(), f"{name}: curl missing from the image but its HEALTHCHECK uses it"


def test_mlflow_check_hits_the_prefixed_path(docker_stack):
    hc = service_healthcheck("mlflow")
    assert hc.path == "/mlflow/health"
    mlflow = docker_stack.services["mlflow"]
    code, _ = mlflow.raw.exec_run(["sh", "-c", hc.command])
    assert code == 0
    wrong = hc.command.replace("/mlflow/health", "/")
    code, _ = mlflow.raw.exec_run(["sh", "-c", wrong])
    assert code != 0, "the incident's check (path /) must fail against MLflow under /mlflow"


@pytest.mark.slow
@pytest.mark.parametrize("path", ["/", "/health"])
def test_mlflow_with_the_incidents_check_turns_unhealthy(docker_stack, budgets, path):
    """The Dockerfile's check pointed at the root instead of /mlflow: the container turns unhealthy.
    The start period is shortened (failures inside it do not count) so the proof is quick."""
    hc = service_healthcheck("mlflow")
    wrong = hc.as_docker_api(
        command=hc.command.replace("/mlflow/health", path), interval=1, timeout=1, retries=2, start_period=0.001
    )  # 0 would mean "inherit the image's 90 s"
    extra = docker_stack.start_extra("mlflow", healthcheck=wrong, instance=f"wrongcheck{path.replace('/', '-')}")
    try:
        # MLflow itself comes up and serves under /mlflow ...
        wait_until(
            lambda: httpx.get(f"{extra.url}/health", timeout=2).status_code,
            until=lambda s: s == 200,
            timeout=budgets.mlflow_ready,
            what="the extra MLflow to serve /mlflow/health",
        )
        # ... and still the container is declared unhealthy
        status = wait_until(
            extra.health,
            until=lambda h: h == "unhealthy",
            timeout=budgets.scaled(30),
            what=f"a check on {path} to turn the container unhealthy",
        )
        assert status == "unhealthy", extra.health_log()
    finally:
        extra.close(5)


def test_api_container_passes_through_the_whole_path(docker_stack):
    r = httpx.get(f"{docker_stack.url('api')}/health", timeout=5)
    assert r.status_code == 200, r.text
    checks = r.json()["checks"]
    assert checks["postgres:responseTime"][0]["status"] == "pass"
    assert checks["mlflow:responseTime"][0]["status"] == "pass"
    created = httpx.post(
        f"{docker_stack.url('api')}/runs", json={"experiment": "e2e", "metrics": {"m": 1.0}}, timeout=10
    )
    assert created.status_code == 201, created.text


@pytest.mark.slow
def test_compose_file_brings_the_stack_up_healthy_and_down_removes_it(
    docker_stack, docker_client, harness_session, budgets
):
    images = docker_stack.runtime.tags
    with ComposeStack(harness_session.id, images, env=harness_session.env()) as compose:
        states = compose.wait_healthy(budgets.mlflow_ready + budgets.api_ready)
        assert states == {"postgres": "healthy", "mlflow": "healthy", "api": "healthy"}
        r = httpx.get(f"http://127.0.0.1:{compose.ports['api']}/health", timeout=5)
        assert r.status_code == 200 and r.json()["status"] == "pass", r.text
        project = compose.project
        # the session's marks on every container, network and volume: the reaper of a run beside,
        # even one with another TMPDIR, sees a live owner and leaves the project alone
        marks = {"harness.session-id": harness_session.id, "harness.session-owner": harness_session.owner}
        own = {"label": f"com.docker.compose.project={project}"}
        labelled = [c.labels for c in docker_client.containers.list(all=True, filters=own)]
        labelled += [n.attrs["Labels"] for n in docker_client.networks.list(filters=own)]
        labelled += [v.attrs["Labels"] for v in docker_client.volumes.list(filters=own)]
        assert len(labelled) == 5 and all(marks.items() <= (x or {}).items() for x in labelled), labelled
        reaped = reap(docker_client=docker_client)  # what `harness down` does: the live project stays
        assert not [c for c in reaped.containers if project in c], reaped.containers
    label = f"com.docker.compose.project={project}"
    assert docker_client.containers.list(all=True, filters={"label": label}) == []
    assert docker_client.volumes.list(filters={"label": label}) == []
    assert docker_client.networks.list(filters={"label": label}) == []
