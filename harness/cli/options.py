"""What several commands share: the environments (discovered from the tfvars files), the one helper
that gives a command's var file, the boot estimate's inputs, how a deployment is made, and the
``type=`` functions that refuse a bad value at parse time (argparse then exits 2 naming the option)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from harness.errors import ConfigurationError
from harness.paths import environment_file, environments
from harness.settings import Settings


def var_file(args: argparse.Namespace) -> Path:
    """The tfvars file a command plans: ``--var-file``, else the ``--env``'s."""
    path = Path(args.var_file) if getattr(args, "var_file", None) else environment_file(args.env)
    if not path.is_file():
        raise ConfigurationError(
            "--var-file: an existing tfvars file",
            str(path),
            f"give a path to a .tfvars file, or --env {'|'.join(environments())}",
        )
    return path


def number(
    kind: type, low: float, high: float | None = None, *, above: bool = False, what: str = ""
) -> Callable[[str], float]:
    """A ``type=`` for argparse: an int or float at least ``low`` (above it, with ``above``) and at
    most ``high``."""
    if high is not None:
        bound = f"between {low:g} and {high:g}"
    else:
        bound = f"above {low:g}" if above else f"{low:g} or more"
    expected = f"{'a whole number' if kind is int else 'a number'} {bound}{f' ({what})' if what else ''}"

    def parse(raw: str) -> float:
        try:
            value = kind(raw)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {raw!r}") from None
        if value < low or (above and value == low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {raw!r}")
        return value

    parse.__name__ = expected  # argparse names the type in some messages
    return parse


SECONDS = number(float, 0, what="seconds")
POSITIVE = number(float, 0, above=True)
COUNT = number(int, 1)
SOME = number(int, 0)


def existing_file(raw: str) -> str:
    if not Path(raw).is_file():
        raise argparse.ArgumentTypeError(f"expected an existing file, got {raw!r}")
    return raw


def env_option(parser: argparse.ArgumentParser, help: str = "the environment planned (its tfvars file)") -> None:
    try:
        names = environments()
    except ConfigurationError:  # no project here: the command says so when it runs
        names = []
    default = "staging" if "staging" in names else (names[0] if names else None)
    parser.add_argument("--env", default=default, choices=names or None, help=f"{help}; default {default}")


def plan_options(parser: argparse.ArgumentParser) -> None:
    """Which plan (--env, --var-file) and what the boot estimate is made of (docs/timings.md,
    "Boot budgets")."""
    from harness.plan.boot import DEFAULT_PULL_MB_S

    env_option(parser)
    parser.add_argument(
        "--var-file", type=existing_file, help="a tfvars file instead of terraform/environments/<env>.tfvars"
    )
    parser.add_argument("--timings", default="reports/timings.json", help="measured times to ready")
    parser.add_argument("--images", default="reports/images.json", help="the built images (their sizes)")
    parser.add_argument(
        "--pull-rate",
        type=POSITIVE,
        default=DEFAULT_PULL_MB_S,
        help=f"image pull rate on Fargate, MB/s (default {DEFAULT_PULL_MB_S:g}: a stated assumption)",
    )
    parser.add_argument(
        "--fargate-factor",
        type=POSITIVE,
        default=1.0,
        help="how much slower a Fargate vCPU starts the service than one core here (default 1)",
    )


def planned_model(args: argparse.Namespace):  # -> TimingModel
    """The plan's timing model for ``plan_options``."""
    from harness.plan.boot import inputs
    from harness.plan.timing import planned

    return planned(var_file(args), inputs(Path(args.timings), Path(args.images), args.pull_rate, args.fargate_factor))


def strategy_options(parser: argparse.ArgumentParser) -> None:
    """How a deployment is made (simulate, rehearse); every default is the plan's."""
    from harness.plan.codedeploy import TRAFFIC

    parser.add_argument(
        "--strategy",
        choices=["rolling", "blue_green"],
        help="default: the plan's (deployment_strategy: ECS rolling or CodeDeploy blue/green)",
    )
    parser.add_argument(
        "--traffic",
        choices=sorted(TRAFFIC),
        help="blue/green: CodeDeploy's traffic shifting (default: the plan's deployment group's)",
    )
    parser.add_argument(
        "--termination-wait",
        type=SECONDS,
        help="blue/green: seconds the blue task set is kept after the shift (default: the plan's)",
    )


def settings_options(parser: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The harness settings a command takes, as pytest takes them: checked by the setting's own
    parser when the command line is parsed; the command resolves them with the other layers."""
    from harness.settings import OPTIONS

    for opt in OPTIONS:
        if opt.name in names:
            parser.add_argument(
                opt.flag, dest=opt.name, default=None, type=_checked(opt.parse), help=f"{opt.help} (env {opt.env})"
            )


def _checked(parse: Callable[[str], object]) -> Callable[[str], str]:
    """The raw value, once ``parse`` accepted it (the settings layers parse it again)."""

    def check(raw: str) -> str:
        try:
            parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return raw

    check.__name__ = "setting"
    return check


STACK_SETTINGS = ("runtime", "timeout_multiplier", "mlflow_workers")


def stack_settings(args: argparse.Namespace) -> tuple[Settings, str]:
    """The settings of a command that starts a stack (``STACK_SETTINGS`` from its options, the
    environment and pytest.ini), and the runtime it resolves to; the runtime and why, on stderr."""
    import os
    import sys

    from harness.settings import ini_values, resolve
    from harness.stack.runtime import resolve_runtime

    settings = resolve({name: getattr(args, name) for name in STACK_SETTINGS}, os.environ, ini_values())
    runtime_name, why = resolve_runtime(settings.runtime)
    print(f"runtime: {runtime_name} ({why})", file=sys.stderr, flush=True)
    return settings, runtime_name
