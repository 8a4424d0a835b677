"""Progress on long steps: one line per update without carriage returns in a log, a line rewritten
in place on a terminal, updates at most every few seconds unless the step enters a new phase, and
the end with its elapsed time. Terraform's and Locust's output read into "done of total" figures."""

import io

import pytest

from harness import progress
from harness.load.live import live_figures
from harness.plan.terraform import ResourceCounter
from harness.progress import Step, write_stderr

pytestmark = pytest.mark.harness


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_one_line_per_update_no_carriage_return_and_at_most_one_every_few_seconds():
    lines, clock = [], Clock()
    s = Step("image mlplatform-api:1", every=5.0, write=lambda line, final: lines.append(line), clock=clock)
    s.update("Step 1/3 : FROM base", new=True)
    clock.now += 1
    s.update("Collecting fastapi")  # within 5 s and not a new phase: not shown
    s.update("Step 2/3 : RUN pip install", new=True)
    clock.now += 6
    s.update("Collecting uvicorn")  # 6 s later: shown
    clock.now += 2
    s.finish(True)
    assert lines == [
        "image mlplatform-api:1:    0s Step 1/3 : FROM base",
        "image mlplatform-api:1:    1s Step 2/3 : RUN pip install",
        "image mlplatform-api:1:    7s Collecting uvicorn",
        "image mlplatform-api:1: done in 9s",
    ]
    out = io.StringIO()
    write_stderr("terraform apply: 40s 3 of 12 resources done", False, out)
    assert out.getvalue() == "terraform apply: 40s 3 of 12 resources done\n"


def test_a_terminal_gets_one_line_rewritten_in_place_until_the_step_ends():
    out = Tty()
    write_stderr("load steady: 10s of 120s", False, out)
    write_stderr("load steady: done in 120s", True, out)
    assert out.getvalue() == "\r\x1b[2Kload steady: 10s of 120s\r\x1b[2Kload steady: done in 120s\n"


def test_a_failing_step_says_so(monkeypatch):
    lines = []
    monkeypatch.setattr(progress, "WRITER", lambda line, final: lines.append(line))
    with pytest.raises(RuntimeError), progress.step("terraform apply (x)"):
        raise RuntimeError("boom")
    assert lines[0] == "terraform apply (x): started" and lines[-1].startswith("terraform apply (x): FAILED in ")


def test_terraform_output_counts_resources_done_of_the_plans_total():
    c = ResourceCounter()
    out = [
        "aws_vpc.main: Creating...",
        "Plan: 11 to add, 1 to change, 0 to destroy.",
        "aws_vpc.main: Creation complete after 1s [id=vpc-1]",
        "aws_subnet.a: Still creating... [10s elapsed]",
        "aws_subnet.a: Creation complete after 12s [id=subnet-1]",
        "aws_ecs_service.api: Modifications complete after 2s",
    ]
    changed = [c.feed(line) for line in out]
    assert changed == [False, True, True, False, True, True]
    assert c.describe() == "3 of 12 resources done"


def test_locusts_history_gives_the_live_figures(tmp_path):
    history = tmp_path / "stats_stats_history.csv"
    assert live_figures(history) is None  # not written yet
    header = (
        "Timestamp,User Count,Type,Name,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,"
        "100%,Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,"
        "Total Min Response Time,Total Max Response Time,Total Average Content Size"
    )
    rows = [
        f"{1795983414 + i},{i},,Aggregated,{i * 4.25},{0.5 if i == 900 else 0},5,6,7,8,9,{100 + i},1,1,1,1,1,"
        f"{i},0,5,5.0,2.0,16.0,300"
        for i in range(901)
    ]
    history.write_text("\n".join([header, *rows]) + "\n")
    assert live_figures(history) == "900 users, 3825.0 req/s, 0.5 failures/s, p95 1000 ms"
