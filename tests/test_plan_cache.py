"""The plan cache serves a plan only for the very inputs it was made from, makes each plan once
across processes, and survives torn entries (harness/plan/plancache.py)."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest

from harness.plan import plancache
from harness.plan.plancache import PlanCache, plan_key
from harness.wait import wait_until

pytestmark = pytest.mark.harness


@pytest.fixture
def config(tmp_path: Path) -> dict:
    """A configuration folder, a tfvars file and a 'binary', as plan_key reads them."""
    work = tmp_path / "work"
    (work / "modules" / "service").mkdir(parents=True)
    (work / "main.tf").write_text('module "api" {}\n')
    (work / "modules" / "service" / "main.tf").write_text('resource "x" "y" {}\n')
    tfvars = tmp_path / "staging.tfvars"
    tfvars.write_text("desired_count = 3\n")
    return {"work": work, "tfvars": tfvars, "version": "1.11.4 linux_amd64"}


def key(config: dict, args: tuple[str, ...] = (), env: dict | None = None, kind: str = "plan", providers="p1") -> str:
    return plan_key(
        kind, config["version"], providers, config["work"], [f"-var-file={config['tfvars']}", *args], env or {}
    )


def test_the_key_changes_with_every_input_of_a_plan(config: dict) -> None:
    base = key(config)
    assert key(config) == base
    assert key(config, kind="plan-error") != base
    assert key(config, providers="p2") != base
    assert key(config, ("-var=desired_count=2",)) != base
    assert key(config, env={"TF_VAR_desired_count": "2"}) != base
    assert key(config, env={"TF_CLI_ARGS_plan": "-var=desired_count=2"}) != base
    assert key({**config, "version": "1.12.0 linux_amd64"}) != base  # a version manager's shim switched
    (config["work"] / "modules" / "service" / "main.tf").write_text('resource "x" "z" {}\n')
    changed_module = key(config)
    assert changed_module != base
    config["tfvars"].write_text("desired_count = 2\n")
    assert key(config) != changed_module


def test_the_key_reads_the_cli_configuration_a_provider_override_lives_in(config: dict, tmp_path: Path) -> None:
    rc = tmp_path / "terraform.rc"
    env = {"TF_CLI_CONFIG_FILE": str(rc), "HOME": str(tmp_path)}
    without = key(config, env=env)
    rc.write_text('provider_installation { dev_overrides { "hashicorp/aws" = "/src/aws" } }\n')
    assert key(config, env=env) != without
    home = {"HOME": str(tmp_path)}
    plain = key(config, env=home)
    (tmp_path / ".terraformrc").write_text('plugin_cache_dir = "/tmp/p"\n')
    assert key(config, env=home) != plain


def test_the_key_ignores_what_terraform_writes_and_where_the_inputs_lie(config: dict, tmp_path: Path) -> None:
    base = key(config, env={"HOME": "/nonexistent", "TF_LOG": ""})
    work = config["work"]
    (work / ".terraform" / "providers").mkdir(parents=True)
    (work / ".terraform" / "providers" / "aws").write_text("a provider")
    (work / ".terraform.lock.hcl").write_text("lock")
    (work / "tfplan").write_bytes(b"a plan")
    (work / "terraform.tfstate").write_text("{}")
    moved = tmp_path / "elsewhere.tfvars"
    moved.write_text(config["tfvars"].read_text())
    assert key({**config, "tfvars": moved}, env={"HOME": "/nonexistent-too", "TF_LOG": "DEBUG"}) == base


def test_a_plan_is_made_once_and_read_back_by_a_later_cache(tmp_path: Path) -> None:
    made: list[int] = []

    def make() -> dict:
        made.append(1)
        return {"resource_changes": [{"address": "aws_lb.main"}]}

    first = PlanCache(tmp_path / "cache").get_or_make("k", make)
    again = PlanCache(tmp_path / "cache")  # another process, later
    assert again.get_or_make("k", make) == first
    assert (len(made), again.hits, again.misses) == (1, 1, 0)
    assert again.get_or_make("other", lambda: None) is None  # an error-less plan_error is kept too
    assert again.get_or_make("other", make) is None


def test_a_torn_entry_is_made_again(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    cache.get_or_make("k", lambda: {"v": 1})
    (tmp_path / "k.json.gz").write_bytes(gzip.compress(b'{"val')[:-4])
    assert cache.get_or_make("k", lambda: {"v": 2}) == {"v": 2}
    (tmp_path / "k.json.gz").write_bytes(b"not gzip")
    assert cache.get_or_make("k", lambda: {"v": 3}) == {"v": 3}
    body = bytearray((tmp_path / "k.json.gz").read_bytes())
    body[len(body) // 2] ^= 0xFF  # a flipped bit inside the deflate stream: zlib.error
    (tmp_path / "k.json.gz").write_bytes(bytes(body))
    assert cache.get_or_make("k", lambda: {"v": 4}) == {"v": 4}
    assert not list(tmp_path.glob("*.tmp"))


def test_a_second_asker_waits_for_the_first_plan_instead_of_making_it_again(tmp_path: Path) -> None:
    """The second asker blocks on the key's lock (seen in /proc/locks) until the first has written."""
    go = threading.Event()
    made: list[str] = []
    results: dict[str, object] = {}

    def make(name: str):
        def inner() -> dict:
            made.append(name)
            go.wait(timeout=30)
            return {"by": name}

        return inner

    def ask(name: str) -> None:
        results[name] = PlanCache(tmp_path).get_or_make("k", make(name))

    first = threading.Thread(target=ask, args=("first",))
    first.start()
    wait_until(lambda: list(made), timeout=10, what="the first asker making the plan")
    second = threading.Thread(target=ask, args=("second",))
    second.start()
    inode = str(os.stat(tmp_path / "k.lock").st_ino)

    def waiters() -> list[str]:
        return [line for line in Path("/proc/locks").read_text().splitlines() if "->" in line and f":{inode} " in line]

    wait_until(waiters, timeout=10, what="the second asker waiting on the key's lock")
    go.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert made == ["first"]
    assert results == {"first": {"by": "first"}, "second": {"by": "first"}}


def test_the_folder_keeps_the_newest_entries_and_their_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plancache, "KEEP", 2)
    cache = PlanCache(tmp_path)
    for i, name in enumerate(["a", "b"]):
        cache.get_or_make(name, lambda: {})
        os.utime(tmp_path / f"{name}.json.gz", ns=(i * 10**9, i * 10**9))
    cache.get_or_make("a", lambda: {"never": "made"})  # a hit: now the newest
    cache.get_or_make("c", lambda: {})  # b, the least recently used, goes
    assert sorted(p.name for p in tmp_path.glob("*.json.gz")) == ["a.json.gz", "c.json.gz"]
    assert {p.name for p in tmp_path.glob("*.lock")} >= {"a.lock", "c.lock"}


def test_leftover_locks_and_temp_files_go_once_stale(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)
    cache.get_or_make("kept", lambda: {})
    old = [tmp_path / "orphan.lock", tmp_path / "killed-writer.tmp"]
    for path in old:
        path.write_text("")
        os.utime(path, (1, 1))
    fresh = tmp_path / "being-written.tmp"
    fresh.write_text("")
    os.utime(tmp_path / "kept.lock", (1, 1))
    cache.get_or_make("another", lambda: {})
    assert not any(p.exists() for p in old)
    assert fresh.exists() and (tmp_path / "kept.lock").exists()


def test_only_a_value_worth_keeping_is_kept(tmp_path: Path) -> None:
    cache = PlanCache(tmp_path)

    def transient() -> str:
        return "Error: Failed to load plugin schemas"

    assert cache.get_or_make("k", transient, keep=lambda error: "Invalid value" in error) == transient()
    assert cache.get_or_make("k", lambda: None) is None  # made again: nothing was kept
    assert cache.misses == 2


def test_the_cache_folder_is_configured_or_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_PLAN_CACHE", str(tmp_path / "plans"))
    assert plancache.cache_dir() == tmp_path / "plans"
    monkeypatch.setenv("HARNESS_PLAN_CACHE", "off")
    assert plancache.cache_dir() is None
    assert PlanCache.configured() is None
    monkeypatch.delenv("HARNESS_PLAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert plancache.cache_dir() == tmp_path / "xdg" / "ml-deploy-harness" / "plans"
