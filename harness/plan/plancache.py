"""Saved plans, content-addressed: a plan made once is read back by every later run, xdist worker
or test that asks for the same plan.

``terraform plan -refresh=false`` of a configuration with no state reads nothing but its inputs,
so the same inputs give the same plan. The key is a digest of all of them: the Terraform binary,
the providers it would load (the mirror's files, or the lock file when there is no mirror), every
file of the configuration, the tfvars' content, each ``-var`` and every ``TF_VAR_*`` of the
environment. Change any of them (put a broken value back, upgrade a provider) and the key changes:
the plan is made again. What is kept is the plan's ``show -json`` (or the error that rejected it),
gzipped, one file per key.

Two processes that want the same plan at once take the key's lock (``flock``, which blocks in the
kernel: nothing polls); the second reads what the first wrote. The folder keeps the newest
``KEEP`` entries. ``HARNESS_PLAN_CACHE`` names the folder, or ``off`` plans every time."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

CACHE_ENV = "HARNESS_PLAN_CACHE"
KEEP = 1000  # about 40 KB each: a staging plan's JSON is 230 KB, 40 KB gzipped
STALE_S = 3600.0  # a lock without an entry, or a temp file, older than this is a leftover
SKIPPED_PARTS = {".terraform", ".terraform.lock.hcl", "tfplan"}  # made by init and plan
SKIPPED_SUFFIXES = (".tfstate", ".tfstate.backup")


def cache_dir() -> Path | None:
    """The cache's folder: ``HARNESS_PLAN_CACHE``, else the user's cache folder; None when off."""
    value = os.environ.get(CACHE_ENV, "")
    if value.lower() in {"off", "0", "no", "false"}:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ml-deploy-harness" / "plans"


def _files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not SKIPPED_PARTS & set(rel.parts) and not path.name.endswith(SKIPPED_SUFFIXES):
            yield path


def digest_folder(folder: Path, contents: bool = True) -> str:
    """A digest of every file under ``folder`` (not Terraform's own .terraform/, plans or state):
    their paths and contents, or for large trees like a provider mirror, their sizes and times."""
    h = hashlib.sha256()
    for path in _files(folder):
        h.update(str(path.relative_to(folder)).encode() + b"\0")
        if contents:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            st = path.stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


# Terraform's own settings that change nothing a plan says (the others, TF_CLI_ARGS* among them, are
# keyed); TF_PLUGIN_DIR is the harness's, and the providers' digest covers what it names
UNKEYED_ENV = {
    "TF_IN_AUTOMATION",
    "TF_INPUT",
    "TF_PLUGIN_DIR",
    "TF_LOG",
    "TF_LOG_PATH",
    "TF_LOG_CORE",
    "TF_LOG_PROVIDER",
}


def keyed_env(env: dict[str, str]) -> list[str]:
    """The environment a plan depends on: every ``TF_*`` but ``UNKEYED_ENV``, and the content of the
    CLI configuration (``TF_CLI_CONFIG_FILE`` or ``~/.terraformrc``: provider ``dev_overrides``)."""
    parts = sorted(f"{k}={v}" for k, v in env.items() if k.startswith("TF_") and k not in UNKEYED_ENV)
    rc = Path(env.get("TF_CLI_CONFIG_FILE") or Path(env.get("HOME") or Path.home()) / ".terraformrc")
    if rc.is_file():
        parts.append("cli-config:" + hashlib.sha256(rc.read_bytes()).hexdigest())
    return parts


def plan_key(kind: str, version: str, providers: str, workdir: Path, args: list[str], env: dict[str, str]) -> str:
    """The key of one plan: ``kind`` (a plan or its error), Terraform's version (as ``terraform
    version -json`` says it: a version manager's shim keeps its path and size across versions), the
    providers' digest, the configuration in ``workdir``, the arguments (a ``-var-file``'s content,
    not its path) and the environment (``keyed_env``)."""
    parts = [kind, version, providers, digest_folder(workdir)]
    for arg in args:
        if arg.startswith("-var-file="):
            arg = "-var-file:" + hashlib.sha256(Path(arg.split("=", 1)[1]).read_bytes()).hexdigest()
        parts.append(arg)
    parts += keyed_env(env)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class PlanCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.hits = 0
        self.misses = 0

    @classmethod
    def configured(cls) -> PlanCache | None:
        folder = cache_dir()
        return cls(folder) if folder else None

    def get_or_make(
        self, key: str, make: Callable[[], object], keep: Callable[[object], bool] = lambda value: True
    ) -> object:
        """The value kept under ``key``, else ``make()``'s, kept when ``keep`` says so (an answer of
        the inputs alone, not of a bad moment). One maker per key at a time."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{key}.json.gz"
        with self._locked(key):
            found = self._read(path)
            if found is not None:
                self.hits += 1
                path.touch()
                return found["value"]
            self.misses += 1
            value = make()
            if keep(value):
                self._write(path, {"value": value})
        self._prune()
        return value

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock = self.folder / f"{key}.lock"
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _read(path: Path) -> dict | None:
        """The entry, or None when it is missing or unreadable (a torn or foreign file is made again)."""
        try:
            with gzip.open(path, "rt") as f:
                found = json.load(f)
        except (OSError, EOFError, ValueError, zlib.error):
            return None
        return found if isinstance(found, dict) and "value" in found else None

    def _write(self, path: Path, entry: dict) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as f:
                f.write(json.dumps(entry).encode())
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would lock out another user sharing the folder
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _prune(self) -> None:
        """Keep the newest ``KEEP`` entries (a hit touches its entry). Lock files stay while their
        entry does (deleting one that a process holds would let a second maker in); a lock without
        an entry and a killed writer's temp file go after ``STALE_S``."""

        def touched(path: Path) -> int:
            try:
                return path.stat().st_mtime_ns
            except FileNotFoundError:  # another run pruned it
                return 0

        entries = sorted(self.folder.glob("*.json.gz"), key=touched, reverse=True)
        for old in entries[KEEP:]:
            old.unlink(missing_ok=True)
        stale = time.time_ns() - int(STALE_S * 1e9)
        for leftover in [*self.folder.glob("*.tmp"), *self.folder.glob("*.lock")]:
            kept = leftover.suffix == ".lock" and (self.folder / leftover.name.replace(".lock", ".json.gz")).exists()
            if not kept and 0 < touched(leftover) < stale:
                leftover.unlink(missing_ok=True)
