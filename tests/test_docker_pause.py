"""The Docker runtime's pause, without an engine: a freezer that does not converge at first
(runc's "unable to freeze", the container left running) is tried again until the container is
paused; one that never converges fails within its bound, naming what it last saw."""

import pytest

from harness.stack.runtime.docker import DockerService
from harness.wait import WaitTimeout

pytestmark = pytest.mark.harness


class Engine:
    """A stand-in for the engine's container: ``pause`` fails ``failures`` times first."""

    def __init__(self, failures: int) -> None:
        self.failures, self.status, self.calls = failures, "running", 0
        self.attrs: dict = {}

    def reload(self) -> None:
        self.attrs = {"State": {"Status": self.status}}

    def pause(self) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("Cannot pause container: OCI runtime pause failed: unable to freeze: unknown")
        self.status = "paused"


class Wrapper:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get_wrapped_container(self) -> Engine:
        return self.engine


def test_a_freezer_that_converges_late_still_pauses():
    engine = Engine(failures=2)
    DockerService("postgres", Wrapper(engine), 0, "", 5432).pause()
    assert engine.status == "paused" and engine.calls == 3


def test_a_freezer_that_never_converges_fails_naming_the_error(monkeypatch):
    import harness.stack.runtime.docker as docker_runtime

    real = docker_runtime.wait_until
    monkeypatch.setattr(docker_runtime, "wait_until", lambda *a, **k: real(*a, **{**k, "timeout": 0.5}))
    with pytest.raises(WaitTimeout, match="unable to freeze"):
        DockerService("postgres", Wrapper(Engine(failures=10**6)), 0, "", 5432).pause()
