"""The pipeline's commands: run a stage or a pipeline job's share of it, plan the shards, record
where the time goes, merge the jobs' reports.

    python -m harness stage pr                     # the pull-request stage (make test)
    python -m harness stage proof --shard 2/4      # job 2 of 4 of the full proof
    python -m harness stage pr -- -x -k health     # pytest's own arguments after --
    python -m harness shards --stage proof --jobs 4
    python -m harness durations --record reports/durations*.json
    python -m harness merge-reports --reports-dir reports shard-1/reports shard-2/reports
    python -m harness archive-reports               # file this run under reports/runs/, the front door
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from harness.cli.options import existing_file, number
from harness.errors import ConfigurationError
from harness.paths import project, shown
from harness.pipeline import durations, reports, shards, stages


def shard(raw: str) -> str:
    """A ``type=`` for ``--shard``: K/N, job K of N."""
    try:
        stages.parse_shard(raw)
    except ConfigurationError:
        raise argparse.ArgumentTypeError(f"expected K/N with 1 <= K <= N (job K of N), got {raw!r}") from None
    return raw


def existing_dir(raw: str) -> str:
    if not Path(raw).is_dir():
        raise argparse.ArgumentTypeError(f"expected an existing folder, got {raw!r}")
    return raw


def command_line(raw: str) -> list[str]:
    """A command to run (``--beside``): shell words whose first is a program on PATH."""
    try:
        words = shlex.split(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected a command in shell words, got {raw!r} ({exc})") from None
    if not words or shutil.which(words[0]) is None:
        raise argparse.ArgumentTypeError(f"expected a command whose program is on PATH, got {raw!r}")
    return words


def cmd_stage(args: argparse.Namespace) -> int:
    extra = list(args.pytest_args)
    return stages.run(
        args.name,
        shard=args.shard,
        workers=args.workers,
        pytest_args=extra,
        reports=Path(args.reports_dir) if args.reports_dir else None,
        recorded=Path(args.durations) if args.durations else None,
        say=lambda line: print(f"harness: {line}", file=sys.stderr, flush=True),
        beside=args.beside or (),
    )


def cmd_shards(args: argparse.Namespace) -> int:
    path = Path(args.durations) if args.durations else durations.recorded_file()
    seconds = durations.read_recorded(path)
    if not seconds:
        raise ConfigurationError(f"recorded durations in {shown(path)}", "none (harness durations --record)")
    s = stages.stage(args.stage)
    args.workers = args.workers or s.workers
    items = stages.stage_items(s, seconds)
    jobs = shards.plan(items, args.jobs, args.workers)
    if args.json:
        doc = {
            "stage": args.stage,
            "workers": args.workers,
            "jobs": [{"job": j.number, "seconds": round(j.seconds, 1), "tests": j.nodeids} for j in jobs],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(f"stage {args.stage} in {args.jobs} jobs of {args.workers} workers, by {shown(path)}:")
        for j in jobs:
            files = ", ".join(u.name.removeprefix("suites/") for u in j.parallel[:4])
            more = f" and {len(j.parallel) - 4} more files" if len(j.parallel) > 4 else ""
            print(
                f"  job {j.number}: {j.seconds / 60:5.1f} min  {len(j.nodeids):4} tests  "
                f"({len(j.serial)} serial)  {files}{more}"
            )
    over = [j for j in jobs if j.seconds > args.limit * 60]
    if over:
        print(f"jobs over {args.limit:g} min: {', '.join(str(j.number) for j in over)}", file=sys.stderr)
    return 1 if over else 0


def cmd_durations(args: argparse.Namespace) -> int:
    # by default the stages' own runs (not a verify, fuzz or merged file: they would skew the figures)
    runs = [Path(p) for p in args.runs] or sorted(
        p for p in (project().root / "reports").glob("durations-*.json") if p.stem.split("-")[1] in ("pr", "proof")
    )
    if not runs:
        raise ConfigurationError("durations files of a run (reports/durations-*.json)", "none")
    seconds = durations.read_runs(runs)
    if args.record:
        # the commit the runs measured: that of the checkout their files are in (not this one's)
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=runs[0].resolve().parent, capture_output=True, text=True
            ).stdout.strip()
            or "unknown (the runs' files are in no checkout)"
        )
        doc = durations.recorded_document(
            seconds, datetime.date.today().isoformat(), commit, f"from {', '.join(p.name for p in runs)}"
        )
        durations.recorded_file().write_text(json.dumps(doc, indent=1) + "\n")
        print(f"recorded {len(seconds)} tests in {shown(durations.recorded_file())}", file=sys.stderr)
    total = sum(seconds.values())
    print("| suite | tests | seconds | share |\n|---|---:|---:|---:|")
    for suite, n, sec in durations.by_suite(seconds):
        print(f"| {suite} | {n} | {sec:.0f} | {100 * sec / total:.0f} % |")
    print(f"| all | {len(seconds)} | {total:.0f} | |")
    return 0


def cmd_merge_reports(args: argparse.Namespace) -> int:
    out = Path(args.reports_dir)
    dirs = [Path(d) for d in args.dirs]
    total = reports.merge(dirs, out)
    print(f"{out / 'index.html'}: {total.tests} tests, {total.failures} failures, {total.errors} errors")
    return 0 if total.passed and not _lost(args.stage, reports.junit_files(dirs)) else 1


def _lost(stage: str | None, junits: list[Path]) -> list[str]:
    """The tests of ``stage`` (as this checkout collects it) in none of ``junits``, said on stderr."""
    if not stage:
        return []
    expected = stages.stage_tests(stages.stage(stage), stages.collect())
    lost = reports.not_reported(junits, expected)
    if lost:
        listed = "\n  ".join(lost[:20]) + (f"\n  ... and {len(lost) - 20} more" if len(lost) > 20 else "")
        print(
            f"stage {stage}: {len(lost)} of its {len(expected)} tests are in no job's report:\n  {listed}",
            file=sys.stderr,
        )
    return lost


def cmd_archive_reports(args: argparse.Namespace) -> int:
    from harness.pipeline import runs

    out = Path(args.reports_dir)
    sources = [Path(d) for d in args.dirs] or [out]
    since = Path(args.since).stat().st_mtime if args.since else None
    run_dir, total, ok = runs.archive(out, sources, runs.commit_of(project().root), since=since)
    lost = _lost(args.stage, reports.junit_files([run_dir, *(p for p in run_dir.iterdir() if p.is_dir())]))
    print(
        f"{total.tests} tests, {total.failures} failures, {total.errors} errors"
        f"{'' if ok or not total.passed else '; a load run failed its SLO gate'}; "
        f"filed under {shown(run_dir)} ({shown(out / runs.LATEST)})",
        file=sys.stderr,
    )
    print(out / "index.html")
    return 0 if ok and not lost else 1


def register(sub: argparse._SubParsersAction) -> None:
    recorded = ".ci/durations.json"
    workers = number(int, 1, what="pytest-xdist workers")
    st = sub.add_parser(
        "stage",
        help="run one stage of the proof (pr, proof-extra, proof), or a pipeline job's share of it",
        description=stages.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    st.add_argument("name", choices=list(stages.STAGES), help="the stage")
    st.add_argument("--shard", type=shard, metavar="K/N", help="run only job K of N (the plan of `harness shards`)")
    own = ", ".join(f"{n} {s.workers}" for n, s in stages.STAGES.items())
    st.add_argument(
        "--workers", type=workers, default=None, help=f"pytest-xdist workers of the parallel phase (default: {own})"
    )
    st.add_argument("--reports-dir", default=None, help="where the reports go (default: the project's reports/)")
    st.add_argument(
        "--beside",
        metavar="CMD",
        type=command_line,
        help="a command to run beside the tests, e.g. 'make lint' (make test does): in a process group of its "
        "own, stopped with the stage; its output in <reports>/<stage>-beside.log, shown if it fails; "
        "its failure fails the stage",
    )
    st.add_argument(
        "--durations",
        type=existing_file,
        default=None,
        help=f"the recorded durations --shard plans by (default {recorded})",
    )
    # after --, pytest's own arguments (``main`` splits them off: argparse would take them for ours)
    st.set_defaults(func=cmd_stage, pytest_args=[])

    sh = sub.add_parser("shards", help="plan a stage's pipeline jobs from the recorded durations")
    sh.add_argument("--stage", default="proof", choices=list(stages.STAGES), help="the stage (default proof)")
    sh.add_argument("--jobs", type=number(int, 1, what="pipeline jobs"), default=4, help="how many jobs (default 4)")
    sh.add_argument("--workers", type=workers, default=None, help=f"pytest-xdist workers per job (default: {own})")
    sh.add_argument(
        "--limit",
        type=number(float, 0, above=True, what="minutes"),
        default=10.0,
        help="exit 1 when a job is expected to take longer than this many minutes (default 10)",
    )
    sh.add_argument(
        "--durations", type=existing_file, default=None, help=f"the recorded durations (default {recorded})"
    )
    sh.add_argument("--json", action="store_true", help="every job's tests and expected seconds as JSON")
    sh.set_defaults(func=cmd_shards)

    du = sub.add_parser("durations", help="seconds per suite from a run's durations files; --record keeps them")
    du.add_argument(
        "runs", nargs="*", type=existing_file, help="durations files of runs (default reports/durations*.json)"
    )
    du.add_argument("--record", action="store_true", help="write them as the recorded durations (.ci/durations.json)")
    du.set_defaults(func=cmd_durations)

    mr = sub.add_parser("merge-reports", help="merge the pipeline jobs' report folders: junit.xml and index.html")
    mr.add_argument("dirs", nargs="+", type=existing_dir, help="the jobs' report folders")
    mr.add_argument("--reports-dir", default="reports", help="where the merged files go (default reports/)")
    stage_check(mr)
    mr.set_defaults(func=cmd_merge_reports)

    ar = sub.add_parser(
        "archive-reports",
        help="file a run's reports under reports/runs/<time>-<commit>/ (latest points at it), add it to the "
        "history, write the front door reports/index.html; prints its path",
    )
    ar.add_argument(
        "dirs", nargs="*", type=existing_dir, help="the run's report folders (default: --reports-dir itself)"
    )
    ar.add_argument("--reports-dir", default="reports", help="where runs/, history.jsonl and index.html are")
    ar.add_argument(
        "--since",
        type=existing_file,
        metavar="FILE",
        help="file only what was written after FILE was (make report touches reports/.run-started first): "
        "an earlier run's leftovers stay out",
    )
    stage_check(ar)
    ar.set_defaults(func=cmd_archive_reports)


def stage_check(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--stage",
        choices=list(stages.STAGES),
        help="exit 1 unless the JUnit files report every test of this stage (as this checkout collects it)",
    )
