"""A thin Terraform wrapper (python-terraform fails with Terraform 1.x): init from the provider
mirror named by TF_PLUGIN_DIR, plan to a file, show it as JSON, apply and destroy.

Each Terraform instance works in a copy of terraform/ in the run's temp dir, so parallel runs
and xdist workers never share .terraform/, state or lock files."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.errors import DependencyMissing, HarnessError
from harness.paths import project
from harness.plan.plancache import PlanCache, digest_folder, plan_key
from harness.process import run_lines
from harness.progress import step

PLUGIN_ENV = "TF_PLUGIN_DIR"
VALIDATION_ERROR = "Invalid value for variable"  # how Terraform reports a failed validation block
T = TypeVar("T")


def terraform_binary() -> str:
    found = shutil.which("terraform")
    if not found:
        raise DependencyMissing(
            "the terraform binary (1.6+) on PATH",
            "none",
            "install Terraform; the terraform and deployment suites skip without it",
        )
    return found


@functools.cache
def terraform_version(binary: str) -> str:
    found = json.loads(subprocess.run([binary, "version", "-json"], capture_output=True, text=True, check=True).stdout)
    return f"{found['terraform_version']} {found.get('platform', '')}"


# where filesystem mirrors of providers usually live (Terraform's own implied mirror directories
# and the places images install them); searched when TF_PLUGIN_DIR is not set
MIRROR_ROOTS = ("/opt", "/usr/local/share", "/usr/share", "~/.terraform.d")


@functools.cache
def find_mirror(roots: tuple[str, ...] = MIRROR_ROOTS, depth: int = 4) -> str | None:
    """The first folder under ``roots`` (at most ``depth`` levels down) that holds
    ``registry.terraform.io/hashicorp/aws``: a provider mirror Terraform can init from offline."""
    for root in roots:
        base = Path(root).expanduser()
        level = [base] if base.is_dir() else []
        for i in range(depth + 1):
            for d in level:
                if d.name == "registry.terraform.io" and (d / "hashicorp" / "aws").is_dir():
                    return str(d.parent)
            if i == depth:
                break
            children: list[Path] = []
            for d in level:
                try:
                    children += sorted(c for c in d.iterdir() if c.is_dir() and not c.is_symlink())
                except OSError:
                    continue
            level = children
    return None


def plugin_dir() -> str | None:
    """The provider mirror: TF_PLUGIN_DIR when set (never a hard-coded path), else one found in the
    usual places (``find_mirror``); None: Terraform uses the registry."""
    value = os.environ.get(PLUGIN_ENV)
    if value and not Path(value).is_dir():
        raise DependencyMissing(
            f"{PLUGIN_ENV} to name a provider mirror directory",
            repr(value),
            "point it at the folder holding registry.terraform.io/hashicorp/aws",
        )
    return value or find_mirror()


class Terraform:
    def __init__(self, workdir: Path, source: Path | None = None) -> None:
        self.binary = terraform_binary()
        source = source or project().terraform_dir
        self.workdir = workdir / "terraform"
        if not self.workdir.exists():
            shutil.copytree(
                source, self.workdir, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl")
            )
        self.env = {k: v for k, v in os.environ.items() if not (k == "TF_CLI_CONFIG_FILE" and not Path(v).exists())}
        self.env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"})
        self._initialised = False
        self.plans = PlanCache.configured()

    def use_source(self, source: Path) -> None:
        """Replace the configuration in the working directory with ``source``'s, keeping the state,
        the providers and the lock file: the next apply moves what was applied to the new
        configuration (changed resources only) instead of starting over."""
        kept = {".terraform", ".terraform.lock.hcl", "terraform.tfstate", "terraform.tfstate.backup"}
        for entry in self.workdir.iterdir():
            if entry.name in kept:
                continue
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        shutil.copytree(
            source,
            self.workdir,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".terraform.lock.hcl"),
        )

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [self.binary, *args, "-no-color"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise HarnessError(
                f"terraform {args[0]} to succeed",
                f"exit {result.returncode}:\n{(result.stderr or result.stdout).strip()[-2000:]}",
                f"run it by hand in {self.workdir}",
            )
        return result

    def init(self) -> None:
        if self._initialised:
            return
        args = ["init", "-backend=false", "-input=false"]
        mirror = plugin_dir()
        if mirror:
            args.append(f"-plugin-dir={mirror}")
        self.run(*args)
        self._initialised = True

    def validate(self) -> dict:
        self.init()
        return json.loads(self.run("validate", "-json", check=False).stdout.replace("-no-color", "") or "{}")

    @staticmethod
    def var_args(var_file: str | None, variables: dict[str, object]) -> list[str]:
        """The tfvars and the variables; before them, the services' images named by the content of
        this checkout (the plan refuses mutable tags), which a tfvars or a variable that names its
        own images overrides (Terraform takes the last value given)."""
        from harness.stack.images import content_tag

        images = {f"{s}_image": content_tag(s) for s in ("api", "mlflow") if f"{s}_image" not in variables}
        args = [f"-var={key}={value}" for key, value in images.items()]
        args += [f"-var-file={Path(var_file).resolve()}"] if var_file else []
        for key, value in variables.items():
            args.append(f"-var={key}={json.dumps(value) if not isinstance(value, str) else value}")
        return args

    def plan(self, var_file: str | None = None, **variables: object) -> dict:
        """``terraform plan`` to a file, then ``show -json`` of it (from the plan cache when the same
        inputs were planned before: see ``harness.plan.plancache``)."""
        args = self.var_args(var_file, variables)

        def make() -> dict:
            self.init()
            out = self.workdir / "tfplan"
            self.run("plan", "-input=false", "-refresh=false", f"-out={out}", *args)
            return json.loads(self.run("show", "-json", str(out)).stdout)

        return self.cached("plan", args, make)

    def plan_error(self, var_file: str | None = None, **variables: object) -> str | None:
        """The error text when the plan is rejected (a failing validation block), else None."""
        args = self.var_args(var_file, variables)

        def make() -> str | None:
            self.init()
            result = self.run("plan", "-input=false", "-refresh=false", *args, check=False)
            return None if result.returncode == 0 else (result.stderr or result.stdout)

        # kept only when the inputs answered: a plan or a variable's validation (not a provider that
        # failed to start on a loaded machine, or a full disk)
        return self.cached("plan-error", args, make, lambda error: error is None or VALIDATION_ERROR in error)

    def cached(
        self, kind: str, args: list[str], make: Callable[[], T], keep: Callable[[T], bool] = lambda _: True
    ) -> T:
        """``make()``, or the kept answer of the same inputs. Only an offline plan of a configuration
        without state is kept: one that asks AWS (or moto) depends on more than its inputs, and one
        with state plans changes against it."""
        offline = "-var=offline=true" in args and not any(a.startswith("-var=aws_endpoint=") for a in args)
        if self.plans is None or not offline or (self.workdir / "terraform.tfstate").exists():
            return make()
        mirror = plugin_dir()
        if mirror:
            providers = digest_folder(Path(mirror), contents=False)
        else:  # the registry: the lock file init writes names the providers' versions and hashes
            self.init()
            providers = (self.workdir / ".terraform.lock.hcl").read_text()
        key = plan_key(kind, self.version(), providers, self.workdir, args, self.env)
        return self.plans.get_or_make(key, make, keep)  # type: ignore[return-value,arg-type]

    def version(self) -> str:
        """``terraform version -json``'s version and platform (once per binary and process)."""
        return terraform_version(self.binary)

    def apply(self, var_file: str | None = None, timeout: float = 900, **variables: object) -> None:
        self.init()
        self.run_counted("apply", "-auto-approve", "-input=false", *self.var_args(var_file, variables), timeout=timeout)

    def run_counted(self, *args: str, timeout: float, check: bool = True) -> int:
        """An apply or destroy with progress: elapsed and resources done of the plan's count."""
        counter = ResourceCounter()
        with step(f"terraform {args[0]}") as s:

            def on_line(line: str) -> None:
                if counter.feed(line):
                    s.update(counter.describe())

            code, tail = run_lines([self.binary, *args, "-no-color"], self.env, timeout, on_line, cwd=self.workdir)
            if check and code != 0:
                raise HarnessError(
                    f"terraform {args[0]} to succeed",
                    f"exit {code}:\n{tail.strip()[-2000:]}",
                    f"run it by hand in {self.workdir}",
                )
        return code

    def output(self) -> dict:
        return {k: v["value"] for k, v in json.loads(self.run("output", "-json").stdout).items()}


class ResourceCounter:
    """Reads terraform apply/destroy output: how many resources the plan touches and how many are done."""

    PLANNED = re.compile(r"^Plan: (\d+) to add, (\d+) to change, (\d+) to destroy")
    DONE = re.compile(r": (Creation|Modifications|Destruction) complete after")

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def feed(self, line: str) -> bool:
        """True when the line changed the count."""
        planned = self.PLANNED.search(line)
        if planned:
            self.total = sum(int(n) for n in planned.groups())
            return True
        if self.DONE.search(line):
            self.done += 1
            return True
        return False

    def describe(self) -> str:
        return f"{self.done} of {self.total if self.total is not None else '?'} resources done"
