"""The stages of the proof, each with a purpose, and the runner that runs one (``harness stage``).

    pr           the pull-request stage (``make test``): every static check (make lint, beside
                 its tests: ``--beside``), every plan rule, the unit, integration, end-to-end,
                 contract and Terraform suites, the harness's own tests, the fault scenarios, one
                 rolling rehearsal of the staging plan, and a short load smoke with its SLO gate
    proof-extra  what the full proof adds: every other rehearsal variant (blue/green, the circuit
                 breaker, faults in the middle of a deployment...), the whole load suite, the
                 nemesis, the harness's own tests that start a stack or session of their own,
                 and the docs' examples that disrupt a stack
    proof        the full proof before a deployment (``make proof``): both of the above

A test belongs to ``proof-extra`` by the ``proof`` marker and to ``pr`` otherwise, so every test is
in exactly one of the two and in ``proof``: nothing proven is proven in no stage. The nightly runs
(load against staging, the fuzzer with a random seed, many nemesis seeds) are workflows, not test
selections (docs/pipeline.md).

Each stage runs in two phases, as ``make test`` always has: the tests that share the machine on
``workers`` pytest-xdist workers (``--dist loadfile``), then those that saturate it (markers
``load`` and ``alone``) one after another. Each phase writes its own reports:
``reports/<run>.html``, ``reports/junit-<run>.xml`` and ``reports/durations-<run>.json``, with
``<run>`` the stage's name, ``-shard-<k>of<n>`` for a pipeline job's share and ``-serial`` for the
second phase.

``--beside CMD`` runs a command beside the phases (``make test``: the static checks, ``make lint``;
they took 20 s before the tests, while the tests' first seconds wait on containers). It runs in a
process group of its own, stopped with the stage on Ctrl-C; its output goes to
``reports/<stage>-beside.log``, shown when it fails; its failure fails the stage."""

from __future__ import annotations

import ast
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ConfigurationError
from harness.paths import project
from harness.pipeline import shards
from harness.pipeline.durations import read_recorded, recorded_file

PROOF_MARKER = "proof"  # the tests only the full proof runs
SERIAL = "load or alone"  # the tests that run by themselves, after the others


@dataclass(frozen=True)
class Stage:
    name: str
    select: str  # a pytest marker expression ("" selects every test)
    purpose: str
    # pytest-xdist workers of the parallel phase unless asked otherwise (docs/measured.md, "Workers
    # per stage": on two, a third of the CPU sat idle in the pull-request stage; four saturated
    # both cores and brought detections within half a second of their budgets; the full proof's
    # rehearsals missed a detection budget with four fleets side by side)
    workers: int = 2


STAGES = {
    s.name: s
    for s in (
        Stage(
            "pr",
            f"not {PROOF_MARKER}",
            "the pull-request stage: static checks, rules, unit, integration, e2e, contract, Terraform, "
            "fault scenarios, one rolling rehearsal, a load smoke with its SLO gate",
            workers=3,
        ),
        Stage(
            "proof-extra",
            PROOF_MARKER,
            "what the full proof adds: every rehearsal variant, the whole load suite, the nemesis",
        ),
        Stage("proof", "", "the full proof before a deployment: the pull-request stage and everything it leaves out"),
    )
}


def stage(name: str) -> Stage:
    if name not in STAGES:
        raise ConfigurationError(f"a stage, one of {', '.join(STAGES)}", repr(name))
    return STAGES[name]


@dataclass(frozen=True)
class Phase:
    suffix: str  # "" or "-serial"
    expression: str
    parallel: bool


def phases(s: Stage) -> list[Phase]:
    """The stage's two phases with their marker expressions."""
    within = f"({s.select}) and " if s.select else ""
    return [
        Phase("", f"{within}not ({SERIAL})", parallel=True),
        Phase("-serial", f"{within}({SERIAL})", parallel=False),
    ]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> (2, 4): job 2 of 4, counted from 1 as a pipeline's matrix counts."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigurationError("--shard as K/N, e.g. 2/4 (job 2 of 4)", repr(text)) from None
    if not 1 <= k <= n:
        raise ConfigurationError("--shard K/N with 1 <= K <= N", repr(text))
    return k, n


def collect(python: str = sys.executable, extra: Sequence[str] = ()) -> dict[str, set[str]]:
    """Every test pytest collects, in its order, with its markers' names (one collection; nothing
    runs): what ``selects`` tells each stage's and phase's tests apart by."""
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp, "markers.json")
        cmd = [python, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", f"--list-markers={listing}", *extra]
        # a listing runs nothing: no engine or Terraform is required for it (where CI=true would
        # require them, a runner without Docker, as the merge job may be, could not list the tests)
        env = {**os.environ, "HARNESS_REQUIRE": "none"}
        out = subprocess.run(cmd, cwd=project().root, env=env, capture_output=True, text=True, check=False)
        if out.returncode not in (0, 5) or not listing.exists():
            raise ConfigurationError(
                "the tests to collect", f"pytest exited {out.returncode}", (out.stdout + out.stderr)[-2000:]
            )
        return {nodeid: set(markers) for nodeid, markers in json.loads(listing.read_text())}


def selects(expression: str, markers: set[str]) -> bool:
    """Whether pytest's ``-m expression`` selects a test with these markers (``and``, ``or``,
    ``not``, parentheses and marker names, as pytest reads them)."""
    if not expression:
        return True
    tree = ast.parse(expression, mode="eval")
    allowed = (ast.Expression, ast.BoolOp, ast.UnaryOp, ast.And, ast.Or, ast.Not, ast.Name, ast.Load)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise ConfigurationError("a marker expression (names, and, or, not, parentheses)", repr(expression))

    def value(node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in markers
        if isinstance(node, ast.UnaryOp):
            return not value(node.operand)
        assert isinstance(node, ast.BoolOp)
        results = [value(v) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)

    return value(tree.body)


def stage_tests(s: Stage, tests: dict[str, set[str]]) -> list[str]:
    """The node ids of ``tests`` (node id -> markers, as ``collect`` gives them) the stage runs."""
    parallel, serial = phases(s)
    return [n for n, m in tests.items() if selects(parallel.expression, m) or selects(serial.expression, m)]


def stage_items(s: Stage, seconds: dict[str, float], python: str = sys.executable) -> list[shards.Item]:
    """Every test of the stage as an item to place, with its phase and expected seconds."""
    tests = collect(python)
    chosen = stage_tests(s, tests)
    serial = phases(s)[1]
    return shards.items_of(chosen, {n for n in chosen if selects(serial.expression, tests[n])}, seconds)


def run_name(s: Stage, shard: tuple[int, int] | None, phase: Phase) -> str:
    at = f"-shard-{shard[0]}of{shard[1]}" if shard else ""
    return f"{s.name}{at}{phase.suffix}"


def run(
    name: str,
    *,
    shard: str | None = None,
    workers: int | None = None,
    pytest_args: Sequence[str] = (),
    reports: Path | None = None,
    python: str = sys.executable,
    recorded: Path | None = None,
    say: Callable[[str], None] = print,
    beside: Sequence[str] = (),
) -> int:
    """Run stage ``name`` (or job K of N of it), phase by phase, on ``workers`` (default: the
    stage's own), with the command ``beside`` (if any) running alongside; the first failing
    phase's exit code, else ``beside``'s (pytest's 5, nothing selected, counts as success: a shard
    may have no serial test)."""
    s = stage(name)
    reports = reports or project().root / "reports"
    recorded = recorded or recorded_file()
    if not beside:
        return _phases(s, shard, workers, pytest_args, reports, python, recorded, say)
    reports.mkdir(parents=True, exist_ok=True)
    side = Beside(list(beside), reports / f"{s.name}-beside.log", say)
    # a SIGTERM outside a phase's pytest (between phases, before the first) must stop the command
    # beside too: its process group is its own, so nothing else would
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        code = _phases(s, shard, workers, pytest_args, reports, python, recorded, say)
    except BaseException:
        side.stop()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if code == 130:
        side.stop()
        return 130
    side_code = side.wait()
    if side_code == 130:
        return 130
    return code or side_code


def _phases(
    s: Stage,
    shard: str | None,
    workers: int | None,
    pytest_args: Sequence[str],
    reports: Path,
    python: str,
    recorded: Path,
    say: Callable[[str], None],
) -> int:
    workers = workers or s.workers
    where = parse_shard(shard) if shard else None
    pytest_args, narrowed = without_markexpr(pytest_args)
    chosen: list[shards.Item] | None = None
    if where:
        jobs = shards.plan(stage_items(s, read_recorded(recorded), python), where[1], workers)
        job = jobs[where[0] - 1]
        chosen = [i for u in (*job.parallel, *job.serial) for i in u.items]
        say(f"stage {s.name}, job {where[0]} of {where[1]}: {len(chosen)} tests, expected {job.seconds / 60:.1f} min")
    codes = []
    for phase in phases(s):
        ids: list[str] = []
        if chosen is not None:
            ids = [i.nodeid for i in chosen if i.serial != phase.parallel]
            if not ids:
                continue
        run_id = run_name(s, where, phase)
        expression = f"({phase.expression}) and ({narrowed})" if narrowed else phase.expression
        cmd = [python, "-m", "pytest", "-m", expression]
        if phase.parallel and workers > 1:
            cmd += ["-n", str(workers), "--dist", "loadfile"]
        cmd += [
            f"--html={reports / (run_id + '.html')}",
            "--self-contained-html",
            f"--junitxml={reports / ('junit-' + run_id + '.xml')}",
            *pytest_args,
            *ids,
        ]
        say(f"stage {s.name}: {run_id} ({'parallel' if phase.parallel else 'serial'}): -m {expression!r}")
        code = follow(cmd, cwd=project().root)
        if code == 130:
            return 130
        codes.append(code)
    if codes and all(c == 5 for c in codes):
        return 5  # pytest's "no tests ran": a selection that matched nothing is not a pass
    return next((c for c in codes if c not in (0, 5)), 0)  # a phase may select nothing (a shard's serial one)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the stage's teardown runs: the command beside is stopped


class Beside:
    """A command running beside the stage, in a process group of its own (Ctrl-C at the terminal
    does not reach it: the stage stops it, so nothing is left running), its output in ``log``;
    says when it ends, with the output's tail when it failed."""

    TAIL = 60  # lines of a failed command's output shown

    def __init__(self, cmd: list[str], log: Path, say: Callable[[str], None]) -> None:
        self.cmd, self.log, self.say = cmd, log, say
        self.started = time.monotonic()
        self.stopping = False
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd,
                cwd=project().root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        say(f"beside the tests: {shlex.join(cmd)} (output in {log})")
        self.watcher = threading.Thread(target=self._report, daemon=True)
        self.watcher.start()

    def _report(self) -> None:
        code = self.proc.wait()
        took = f"{time.monotonic() - self.started:.0f} s"
        if code == 0:
            self.say(f"beside the tests: {shlex.join(self.cmd)} passed in {took}")
        elif code < 0 and not self.stopping:
            self.say(f"beside the tests: {shlex.join(self.cmd)} was killed by signal {-code} after {took}")
        elif code > 0:
            tail = self.log.read_text(errors="replace").splitlines()[-self.TAIL :]
            self.say(
                f"beside the tests: {shlex.join(self.cmd)} FAILED (exit {code}) in {took}; the stage will "
                f"fail when its tests end. Its output ({self.log}):\n" + "\n".join(tail)
            )

    def wait(self) -> int:
        """Its exit code once it ends (128 + the signal that killed it; 130 if we are interrupted
        meanwhile: it is stopped)."""
        interrupted: list[int] = []

        def note(signum: int, frame: object) -> None:
            interrupted.append(signum)

        old = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                try:
                    code = self.proc.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if interrupted:
                        self.stop()
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)
        self.watcher.join(timeout=5)
        return 130 if interrupted else (128 - code if code < 0 else code)

    def stop(self) -> None:
        """Stop it and whatever it started (its process group), and wait for it: SIGTERM, then
        SIGKILL after 10 s."""
        self.stopping = True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass  # already gone


def without_markexpr(args: Sequence[str]) -> tuple[list[str], str]:
    """``args`` without pytest's ``-m EXPR`` (pytest keeps only the last ``-m``: a user's would
    replace the stage's selection instead of narrowing it), and the expressions taken out, joined."""
    rest, taken = [], []
    it = iter(args)
    for a in it:
        if a == "-m":
            taken.append(next(it, ""))
        elif a.startswith("-m") and not a.startswith("--"):
            taken.append(a[2:].lstrip("="))
        else:
            rest.append(a)
    return rest, " and ".join(f"({t})" for t in taken if t)


def follow(cmd: list[str], cwd: Path) -> int:
    """Run ``cmd`` in our own process group (the terminal's: Ctrl-C reaches pytest and its xdist
    workers directly, ``--pdb`` keeps the terminal, and whoever kills the group kills the run) and
    wait for its teardown. We only note a Ctrl-C (pytest got it already: a second one would cut its
    teardown short) and pass SIGTERM on to pytest, which tears down as on Ctrl-C."""
    child = subprocess.Popen(cmd, cwd=cwd)
    interrupted = []

    def forward(signum: int, frame: object) -> None:
        interrupted.append(signum)
        if signum == signal.SIGTERM and child.poll() is None:
            child.send_signal(signum)

    old = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 130 if interrupted or code in (-signal.SIGINT, -signal.SIGTERM) else code
