"""Reading IAM-style policy documents as AWS evaluates them, and the rules that judge what a
resource's own policy admits: the alarm topic's key (can CloudWatch publish?) and the buckets
(is anyone let in?). ``harness.plan.privilege`` and ``harness.plan.transit`` read policies
through the same helpers.

CloudWatch publishes an alarm to an encrypted SNS topic only when the key's policy lets the
service principal ``cloudwatch.amazonaws.com`` use ``kms:Decrypt`` and ``kms:GenerateDataKey*``;
the AWS-managed key ``alias/aws/sns`` has a policy nobody can change, so such a topic never
receives an alarm. S3 Block Public Access refuses any ACL or policy that would make a bucket
public once all four of its settings are on.
"""

from __future__ import annotations

import fnmatch
import json

from harness.plan.timing import TimingModel, config_address
from harness.plan.violation import Violation

CLOUDWATCH = "cloudwatch.amazonaws.com"
CLOUDWATCH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def policy_statements(policy: str | None) -> list[dict]:
    if not policy:
        return []
    statements = json.loads(policy).get("Statement") or []
    return statements if isinstance(statements, list) else [statements]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _allows(statement: dict, principal_service: str, action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    services = as_list(principal.get("Service")) if isinstance(principal, dict) else []
    if principal_service not in services and principal != "*":
        return False
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in as_list(statement.get("Action")))


def _denies(statement: dict, principal_service: str, action: str) -> bool:
    return statement.get("Effect") == "Deny" and _allows({**statement, "Effect": "Allow"}, principal_service, action)


def key_admits_cloudwatch(policy: str | None) -> list[str]:
    """The actions CloudWatch needs on a topic's key that the key policy does not allow it (an
    explicit Deny wins over any Allow)."""
    statements = policy_statements(policy)
    return [
        a
        for a in CLOUDWATCH_KEY_ACTIONS
        if not any(_allows(s, CLOUDWATCH, a) for s in statements) or any(_denies(s, CLOUDWATCH, a) for s in statements)
    ]


def r_alarm_topic_key(m: TimingModel) -> list[Violation]:
    """Each topic the alarms notify is unencrypted or encrypted with a key of the plan whose policy
    lets CloudWatch use it; never an AWS-managed key (its policy cannot admit CloudWatch)."""
    keys = {config_address(r["address"]): r for r in m.of_type("aws_kms_key")}
    out = []
    for topic in m.of_type("aws_sns_topic"):
        where = f"{m.source}: {topic['address']}.kms_master_key_id"
        key_id = topic["values"].get("kms_master_key_id")
        if not key_id and not topic["unknown"].get("kms_master_key_id"):
            continue  # unencrypted: CloudWatch may publish (checkov asks for encryption)
        expected = f"a customer-managed key whose policy allows {CLOUDWATCH} {' and '.join(CLOUDWATCH_KEY_ACTIONS)}*"
        if key_id and (key_id.startswith("alias/aws/") or ":alias/aws/" in key_id):
            out.append(
                Violation(
                    "alarm-topic-key-admits-cloudwatch",
                    where,
                    key_id,
                    f"{expected} (an AWS-managed key's policy cannot: no alarm would ever be delivered)",
                    "aws_kms_key.alarms.arn",
                )
            )
            continue
        aliases = {config_address(r["address"]): r for r in m.of_type("aws_kms_alias")}
        refs = topic["refs"].get("kms_master_key_id", [])
        refs = refs + [k for a in refs if a in aliases for k in aliases[a]["refs"].get("target_key_id", [])]
        named = [a for a in refs if a in keys]
        if not named:
            out.append(
                Violation(
                    "alarm-topic-key-admits-cloudwatch",
                    where,
                    key_id or "(known after apply)",
                    f"{expected}, in the plan",
                    "aws_kms_key.alarms.arn",
                )
            )
            continue
        key = keys[named[0]]
        missing = key_admits_cloudwatch(key["values"].get("policy"))
        if missing:
            out.append(
                Violation(
                    "alarm-topic-key-admits-cloudwatch",
                    f"{m.source}: {key['address']}.policy",
                    f"no Allow of {', '.join(missing)} to {CLOUDWATCH}",
                    expected,
                    {"Principal": {"Service": CLOUDWATCH}, "Action": ["kms:Decrypt", "kms:GenerateDataKey*"]},
                )
            )
    return out


PUBLIC_ACCESS_BLOCK = ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets")


def r_buckets_private(m: TimingModel) -> list[Violation]:
    """Every bucket has its public access block with all four settings on, and no policy statement
    allows everyone (``Principal: *``) in."""
    blocks = {ref: r for r in m.of_type("aws_s3_bucket_public_access_block") for ref in r["refs"].get("bucket", [])}
    out = []
    for r in m.of_type("aws_s3_bucket"):
        block = blocks.get(config_address(r["address"]))
        off = [k for k in PUBLIC_ACCESS_BLOCK if not (block and block["values"].get(k))]
        if off:
            out.append(
                Violation(
                    "buckets-private",
                    f"{m.source}: {r['address']} (its aws_s3_bucket_public_access_block)",
                    {k: bool(block and block["values"].get(k)) for k in PUBLIC_ACCESS_BLOCK},
                    "all four on: S3 then refuses any ACL or policy that would make the bucket public",
                    dict.fromkeys(PUBLIC_ACCESS_BLOCK, True),
                )
            )
    for r in m.of_type("aws_s3_bucket_policy"):
        for i, st in enumerate(policy_statements(r["values"].get("policy"))):
            principal = st.get("Principal")
            if st.get("Effect") == "Allow" and (
                principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS")))
            ):
                out.append(
                    Violation(
                        "buckets-private",
                        f"{m.source}: {r['address']}.policy Statement[{i}]",
                        {"Effect": "Allow", "Principal": principal, "Action": st.get("Action")},
                        "no Allow to everyone: the platform's roles are granted by their own policies",
                        "remove the statement",
                    )
                )
    return out


RULES = {
    "alarm-topic-key-admits-cloudwatch": r_alarm_topic_key,
    "buckets-private": r_buckets_private,
}
