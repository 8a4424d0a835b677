"""What the plan cache relies on, checked against the real Terraform: the same inputs plan the
same, so a kept plan stands for a new one (tests/test_plan_cache.py: a changed input changes the
key)."""

from __future__ import annotations

import json

import pytest

from harness.paths import environment_file
from harness.plan.plancache import PlanCache
from harness.plan.terraform import Terraform

pytestmark = pytest.mark.terraform


UNORDERED = {"references", "relevant_attributes"}  # Terraform lists these in map order


def comparable(value: object, key: str = "") -> object:
    """A plan without what differs between two plans of the same inputs: when it was made, and the
    order Terraform happens to list references in (the rules read them as sets)."""
    if isinstance(value, dict):
        return {k: comparable(v, k) for k, v in value.items() if k != "timestamp"}
    if isinstance(value, list):
        items = [comparable(v) for v in value]
        return sorted(items, key=json.dumps) if key in UNORDERED else items
    return value


def test_a_kept_plan_is_the_plan_terraform_makes_again(terraform: Terraform, harness_session, tmp_path):
    tfvars = str(environment_file("staging"))
    cache = PlanCache(tmp_path / "plans")
    first = Terraform(harness_session.mkdtemp("tf-cache-first"))
    first.plans = cache
    kept = first.plan(tfvars, offline=True)
    later = Terraform(harness_session.mkdtemp("tf-cache-later"))
    later.plans = cache
    assert later.plan(tfvars, offline=True) == kept
    assert (cache.hits, cache.misses) == (1, 1)
    assert not (later.workdir / "tfplan").exists(), "a kept plan is not planned again"

    fresh = Terraform(harness_session.mkdtemp("tf-cache-fresh"))
    fresh.plans = None
    assert comparable(fresh.plan(tfvars, offline=True)) == comparable(kept)


def test_only_offline_plans_without_state_are_kept_and_the_key_reads_the_instances_environment(
    terraform: Terraform, harness_session, tmp_path
):
    """A plan that asks AWS or moto, or plans against state, depends on more than its inputs."""
    tf = Terraform(harness_session.mkdtemp("tf-cache-which"))
    tf.plans = PlanCache(tmp_path / "plans")
    made: list[str] = []

    def make() -> dict:
        made.append("made")
        return {"planned": len(made)}

    offline = tf.var_args(None, {"offline": True})
    assert tf.cached("plan", offline, make) == tf.cached("plan", offline, make) == {"planned": 1}
    tf.cached("plan", tf.var_args(None, {}), make)  # asks AWS
    tf.cached("plan", tf.var_args(None, {"offline": True, "aws_endpoint": "http://127.0.0.1:5000"}), make)
    assert len(made) == 3
    tf.env["TF_VAR_desired_count"] = "9"
    assert tf.cached("plan", offline, make) == {"planned": 4}
    (tf.workdir / "terraform.tfstate").write_text("{}")
    tf.cached("plan", offline, make)
    tf.cached("plan", offline, make)
    assert len(made) == 6
