"""CodeDeploy's blue/green deployment of an ECS service, in virtual time: the same tasks and checks
as the rolling simulator (``harness.simulation.simulator``), another way to replace them."""

from __future__ import annotations

import random
from collections.abc import Callable

from harness.errors import ConfigurationError
from harness.lifecycle import Milestone, Shift, Step
from harness.plan.codedeploy import traffic_steps
from harness.simulation.simulator import Result, SimConfig, Simulation, Task, sampler


class BlueGreenSimulation(Simulation):
    """A CodeDeploy blue/green deployment of an ECS service: the replacement (green) task set is
    started whole beside the original (blue), registered with the second target group, and
    judged by the same container and ALB checks; a task that fails them after its grace period is
    replaced within the task set (there is no circuit breaker). Once every green task is in
    service, production traffic moves to green in the configuration's steps; after the last one
    the blue task set is kept for ``termination_wait`` seconds (the rollback window), then drains
    for the deregistration delay and stops. Blue keeps 100% of the traffic until the first shift,
    so a green task set that never becomes healthy serves no request: the deployment never
    completes and CodeDeploy fails it at its own timeout (``horizon`` here), rolling back.

    ``alarm_after``: one of the deployment group's rollback alarms fires this many seconds after
    traffic first reached green (a new version that passes its checks but fails under production
    traffic). While blue still runs CodeDeploy stops the deployment and rolls back: all traffic to
    blue, green stopped (outcome ``rolled_back``). Once the termination wait is over there is
    nothing to roll back to: the deployment completes with the failing version serving, and the
    trace says so.

    ``test_listener``: once green is in service, CodeDeploy first points the test listener at it
    (test traffic; the AfterAllowTestTraffic hooks validate the new version there), and production
    traffic moves ``validation`` seconds later (the hooks' run time; 0 without hooks). Without a
    test listener, production traffic is the first traffic green gets."""

    group = "green"

    def __init__(
        self,
        cfg: SimConfig,
        boot: Callable[[random.Random], float],
        seed: int = 0,
        traffic: str = "CodeDeployDefault.ECSAllAtOnce",
        termination_wait: float = 300.0,
        alarm_after: float | None = None,
        test_listener: bool = True,
        validation: float = 0.0,
    ) -> None:
        super().__init__(cfg, boot, seed)
        for life in self.old:
            life.group = "blue"
        self.alarm_after = alarm_after
        if validation < 0:
            raise ConfigurationError("validation: seconds, 0 or more", repr(validation))
        self.test_listener, self.validation = test_listener, validation
        if termination_wait < 0:
            raise ConfigurationError("termination_wait: seconds, 0 or more", repr(termination_wait))
        self.steps, self.traffic, self.termination_wait = traffic_steps(traffic), traffic, termination_wait
        self.green_percent = 0
        self.shifting = False
        self.shifts: list[Shift] = []

    def run(self) -> Result:
        result = super().run()
        if result.outcome == "stuck":
            self.log(
                "replacement task set never healthy: blue kept 100% of the traffic; CodeDeploy fails "
                "the deployment at its timeout and rolls back"
            )
        if self.alarm_after is not None and result.outcome == "completed":  # the alarm came after blue went
            result.trace.append(
                (
                    round(self.shifts[0].at + self.alarm_after, 3),
                    "rollback alarm fires after blue was terminated: nothing to roll back to, the "
                    "failing version keeps serving (the termination wait is shorter than the time to alarm)",
                )
            )
        result.rollout.shifts = list(self.shifts)
        return result

    def fill(self) -> None:
        """The replacement task set at full size from the start (no rolling limits)."""
        while len(self.new_alive()) < self.cfg.desired:
            self.launch()

    def stop_old(self) -> None:  # blue stops only after the termination wait
        return

    def maybe_healthy(self, task: Task) -> None:
        if task.healthy_at is not None or task.alb != "healthy" or task.container != "HEALTHY":
            return
        task.life.mark(Step.IN_SERVICE, self.now)
        self.log(f"task {task.id} healthy (green target group; no production traffic yet)")
        ready = len([t for t in self.new_alive() if t.healthy_at is not None]) >= self.cfg.desired
        if ready and not self.shifting:
            self.shifting = True
            start = self.now
            self.log("replacement task set ready")
            self.rollout.reached(Milestone.GREEN_IN_SERVICE, self.now)
            if self.test_listener:
                self.rollout.reached(Milestone.TEST_TRAFFIC, self.now)
                self.log(
                    "test listener routes to green: test traffic only; the AfterAllowTestTraffic hooks "
                    f"validate the new version ({self.validation:.0f}s) before production traffic moves"
                )
                start += self.validation
            else:
                self.log("no test listener: production traffic is the first traffic green gets")
            self.log(f"production traffic shifts by {self.traffic}")
            for i, (after, _) in enumerate(self.steps):
                self.at(start + after, "shift", i)

    def maybe_replace(self, task: Task) -> None:  # within the task set: no circuit breaker
        if not self.replace_if_unhealthy(task):
            return
        self.log(f"task {task.id} stopped as unhealthy and replaced in the task set ({self.replaced} so far)")
        self.fill()

    def on_shift(self, step: int) -> None:
        if not self.shifts and self.alarm_after is not None:
            self.at(self.now + self.alarm_after, "alarm")
        self.green_percent = self.steps[step][1]
        self.shifts.append(Shift(self.now, self.green_percent))
        self.log(f"production traffic: {self.green_percent}% green, {100 - self.green_percent}% blue")
        if self.green_percent == 100:
            self.log(f"blue task set kept {self.termination_wait:.0f}s for rollback (termination wait)")
            self.at(self.now + self.termination_wait, "terminate_blue")

    def on_alarm(self, _: int) -> None:
        if self.old_running == 0:
            return  # blue already terminated, too late: reported when the run ends
        self.shifts.append(Shift(self.now, 0))
        self.log("rollback alarm: CodeDeploy stops the deployment and rolls back: 100% of the traffic to blue")
        for task in self.new_alive():
            task.alive = False
            task.life.mark(Step.STOPPED, self.now)
        self.log("replacement task set stopped")
        self.rollout.reached(Milestone.ROLLED_BACK, self.now)
        self.result = Result("rolled_back", self.now, self.trace, self.replaced, 0)

    def on_terminate_blue(self, _: int) -> None:
        self.log(f"blue task set terminated: its targets drain ({self.cfg.deregistration_delay:.0f}s)")
        self.rollout.reached(Milestone.TERMINATION_WAIT_OVER, self.now)
        for i, old in enumerate(self.old):
            self.old_running -= 1
            self.old_draining += 1
            old.mark(Step.DRAINING, self.now)
            self.at(self.now + self.cfg.deregistration_delay, "old_stopped", i)

    def on_old_stopped(self, index: int) -> None:
        self.old[index].mark(Step.STOPPED, self.now)
        self.old_draining -= 1
        if self.old_draining == 0 and self.old_running == 0:
            self.log("blue task set stopped")
            self.check_done()

    def check_done(self) -> None:
        if self.green_percent == 100 and self.old_running == 0 and self.old_draining == 0:
            self.log("deployment COMPLETED")
            self.result = Result("completed", self.now, self.trace, self.replaced, 0)


def simulate_blue_green(
    cfg: SimConfig,
    boot: float | Callable[[random.Random], float],
    traffic: str = "CodeDeployDefault.ECSAllAtOnce",
    termination_wait: float = 300.0,
    seed: int = 0,
    alarm_after: float | None = None,
    test_listener: bool = True,
    validation: float = 0.0,
) -> Result:
    """Simulate one CodeDeploy blue/green deployment (see ``BlueGreenSimulation``)."""
    return BlueGreenSimulation(
        cfg, sampler(boot), seed, traffic, termination_wait, alarm_after, test_listener, validation
    ).run()
