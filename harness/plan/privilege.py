"""The rule that says whether the plan's roles grant only what they need (docs/security.md):
every inline policy names its actions and resources, a service's role reads no other service's
secret, and only the managed policies ECS and CodeDeploy document are attached.

A Secrets Manager secret's ARN is its name, ``-`` and six characters, so a policy can name one
secret before it exists (``secret:<name>-??????``)."""

from __future__ import annotations

import fnmatch
import re

from harness.plan.policies import as_list, policy_statements
from harness.plan.timing import TimingModel
from harness.plan.violation import Violation

# actions AWS authorises only on "*" (no resource-level permissions)
STAR_ONLY_ACTIONS = ("ecr:GetAuthorizationToken",)
# the AWS-managed policies a role of the plan may carry: what ECS and CodeDeploy document for
# their roles (the limited CodeDeploy one: the full one reads every bucket and invokes every function)
MANAGED_POLICIES = (
    "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy",
    "arn:aws:iam::aws:policy/AWSCodeDeployRoleForECSLimited",
)
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[^:]*:[^:]*:secret:(?P<name>.+)$")


def _key_of(address: str) -> str | None:
    found = re.search(r'\["([^"]+)"\]$', address)
    return found.group(1) if found else None


def _broad(resource: str) -> bool:
    """``*``, or an ARN whose resource part is ``*`` (``arn:aws:s3:::*``, ``arn:...:secretsmanager:r:a:*``)."""
    parts = resource.split(":", 5)
    return resource == "*" or (len(parts) == 6 and parts[5].startswith("*"))


def statement_findings(statement: dict, owner: str | None, secrets: dict[str, str | None]) -> list[tuple[object, str]]:
    """(value, what was expected) for each way one Allow statement grants more than its role needs:
    a wildcard action, a resource the whole account matches (but for actions AWS authorises only on
    ``*``), or a secret of another service than ``owner`` (``secrets``: secret name -> its service)."""
    if statement.get("Effect") != "Allow":
        return []
    actions = [str(a) for a in as_list(statement.get("Action"))]
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    found: list[tuple[object, str]] = []
    wild = [a for a in actions if a == "*" or a.endswith(":*")]
    if wild:
        found.append(
            ({"Action": wild}, "the actions the role uses, by name (s3:* would also let it delete the bucket's policy)")
        )
    broad = [r for r in resources if _broad(r)]
    if broad and not all(a in STAR_ONLY_ACTIONS for a in actions):
        found.append(
            (
                {"Action": actions, "Resource": broad},
                "the resources the actions need, by ARN (a * reaches every resource of the account)",
            )
        )
    for resource in resources:
        matched = SECRET_ARN.match(resource)
        if not matched or _broad(resource):
            continue
        others = sorted(
            {
                svc
                for name, svc in secrets.items()
                if svc and svc != owner and fnmatch.fnmatchcase(f"{name}-AbCdEf", matched["name"])
            }
        )
        if others:
            found.append(
                (
                    resource,
                    f"only {owner}'s own secret: this reads the secret of {', '.join(others)}"
                    if owner
                    else f"a role of one service: this one reads the secrets of {', '.join(others)}",
                )
            )
    return found


def secret_owners(m: TimingModel) -> dict[str, str | None]:
    """Each planned secret's name -> the service it belongs to (the one its name carries: <name>/<service>/...)."""
    return {
        r["values"].get("name"): _service_of_secret(r["values"].get("name") or "", m)
        for r in m.of_type("aws_secretsmanager_secret")
    }


def r_least_privilege(m: TimingModel) -> list[Violation]:
    """Every inline policy of the plan's roles names its actions and resources (no wildcard action,
    no ``*`` resource but for actions AWS authorises only on ``*``); a role kept for one service
    (its policy keyed by the service) reads no secret another service owns; a policy the plan
    cannot show names no collection of secrets; only the AWS-managed policies ECS and CodeDeploy
    document are attached."""
    secrets = secret_owners(m)
    passing = "the ARNs and actions of its own bucket, secret or log group"
    out = []
    for r in m.of_type("aws_iam_role_policy"):
        where = f"{m.source}: {r['address']}.policy"
        owner = _key_of(r["address"])
        owner = owner if owner in m.services else None
        policy = r["values"].get("policy")
        if policy is None:
            broad = [ref for ref in r["refs"].get("policy", []) if ref.endswith("_arns")]
            if broad:
                out.append(
                    Violation(
                        "roles-least-privilege",
                        where,
                        f"(known after apply) from {', '.join(sorted(set(broad)))}",
                        "a policy whose secrets the plan shows: each service's role names its own secret "
                        "(arn:...:secret:<name>-??????), not the services' secrets as a whole",
                        'Resource = "arn:aws:secretsmanager:<region>:<account>:secret:<its secret name>-??????"',
                    )
                )
            continue
        for i, st in enumerate(policy_statements(policy)):
            for value, expected in statement_findings(st, owner, secrets):
                out.append(Violation("roles-least-privilege", f"{where} Statement[{i}]", value, expected, passing))
    for r in m.of_type("aws_iam_role_policy_attachment"):
        arn = r["values"].get("policy_arn")
        if arn and arn not in MANAGED_POLICIES:
            out.append(
                Violation(
                    "roles-least-privilege",
                    f"{m.source}: {r['address']}.policy_arn",
                    arn,
                    "one of the managed policies ECS and CodeDeploy document for their roles "
                    f"({', '.join(sorted(MANAGED_POLICIES))}); anything more as an inline policy naming its resources",
                    sorted(MANAGED_POLICIES)[0],
                )
            )
    return out


def _service_of_secret(name: str, m: TimingModel) -> str | None:
    """The service a secret belongs to: the one its name carries as a path segment (<name>/<service>/...)."""
    parts = name.split("/")
    return next((s for s in m.services if s in parts[1:]), None)


RULES = {"roles-least-privilege": r_least_privilege}
