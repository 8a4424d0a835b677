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
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\n")
    return {"work": work, "tfvars": tfvars, "binary": binary}


def key(config: dict, args: tuple[str, ...] = (), env: dict | None = None, kind: str = "plan", providers="p1") -> str:
    return plan_key(
        kind, str(config["binary"]), providers, config["work"], [f"-var-file={config['tfvars']}", *args], env or {}
    )


def test_the_key_changes_with_every_input_of_a_plan(config: dict) -> None:
    base = key(config)
    assert key(config) == base
    assert key(config, kind="plan-error") != base
    assert key(config, providers="p2") != base
    assert key(config, ("-var=desired_count=2",)) != base
    assert key(config, env={"TF_VAR_desired_count": "2"}) != base
    (config["work"] / "modules" / "service" / "main.tf").write_text('resource "x" "z" {}\n')
    changed_module = key(config)
    assert changed_module != base
    config["tfvars"].write_text("desired_count = 2\n")
    assert key(config) != changed_module
    before_binary = key(config)
    config["binary"].write_text("#!/bin/sh\n# another version\n")
    assert key(config) != before_binary


def test_the_key_ignores_what_terraform_writes_and_where_the_inputs_lie(config: dict, tmp_path: Path) -> None:
    base = key(config, env={"HOME": "/root"})
    work = config["work"]
    (work / ".terraform" / "providers").mkdir(parents=True)
    (work / ".terraform" / "providers" / "aws").write_text("a provider")
    (work / ".terraform.lock.hcl").write_text("lock")
    (work / "tfplan").write_bytes(b"a plan")
    (work / "terraform.tfstate").write_text("{}")
    moved = tmp_path / "elsewhere.tfvars"
    moved.write_text(config["tfvars"].read_text())
    assert key({**config, "tfvars": moved}, env={"HOME": "/home/someone"}) == base


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


def test_the_folder_keeps_the_newest_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plancache, "KEEP", 2)
    cache = PlanCache(tmp_path)
    for i, name in enumerate(["a", "b", "c"]):
        cache.get_or_make(name, lambda: {})
        os.utime(tmp_path / f"{name}.json.gz", ns=(i * 10**9, i * 10**9))
    cache.get_or_make("a", lambda: {})  # made again: the oldest was pruned; now the newest
    assert sorted(p.name for p in tmp_path.glob("*.json.gz")) == ["a.json.gz", "c.json.gz"]


def test_the_cache_folder_is_configured_or_off(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_PLAN_CACHE", str(tmp_path / "plans"))
    assert plancache.cache_dir() == tmp_path / "plans"
    monkeypatch.setenv("HARNESS_PLAN_CACHE", "off")
    assert plancache.cache_dir() is None
    assert PlanCache.configured() is None
    monkeypatch.delenv("HARNESS_PLAN_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert plancache.cache_dir() == tmp_path / "xdg" / "ml-deploy-harness" / "plans"
