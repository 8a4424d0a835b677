"""The rules that say whether the planned platform is safe to expose: who can reach what, what
travels in clear, whether an alarm can reach anyone, which secrets each role may read, and
whether a task runs the code it names.

Read as AWS applies them (docs/security.md gives the sources):
- a listener of an internet-facing balancer is public on every port its security groups open to
  ``0.0.0.0/0`` or ``::/0``; the ``source-ip`` condition of a listener rule sees the client's own
  address, so a rule that admits only the VPC's range is reached by nobody outside it;
- CloudWatch publishes an alarm to an encrypted SNS topic only when the key's policy lets the
  service principal ``cloudwatch.amazonaws.com`` use ``kms:Decrypt`` and ``kms:GenerateDataKey*``;
  the AWS-managed key ``alias/aws/sns`` has a policy nobody can change, so such a topic never
  receives an alarm;
- S3 serves plain HTTP unless the bucket policy denies requests whose ``aws:SecureTransport`` is
  false;
- a Secrets Manager secret's ARN is its name, ``-`` and six characters, so a policy can name one
  secret before it exists (``secret:<name>-??????``);
- a tag such as ``latest`` can point at new code at any time: two tasks of one task definition
  may run different images, and a rollback returns to whatever the tag names today."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from collections.abc import Iterator

from harness.plan.timing import TimingModel, config_address
from harness.plan.violation import Violation

WORLD = ("0.0.0.0/0", "::/0")
# services that serve everyone who reaches them: no sign-in of their own
UNAUTHENTICATED = {
    "mlflow": "MLflow has no authentication: whoever reaches it reads, changes and deletes experiments, "
    "runs and artifacts",
}
SIGN_IN_ACTIONS = ("authenticate-cognito", "authenticate-oidc")
# what CloudWatch must be allowed to do with a topic's key to publish an alarm to it
CLOUDWATCH = "cloudwatch.amazonaws.com"
CLOUDWATCH_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
IMMUTABLE_IMAGE = re.compile(r"^[^@\s]+(@sha256:[0-9a-f]{64}|:[0-9a-f]{7,64})$")
TLS_ONLY = {"Bool": {"aws:SecureTransport": "false"}}  # the condition that refuses plain HTTP
MODERN_TLS = re.compile(r"TLS13|TLS-1-2")  # ELB security policies that refuse TLS 1.0 and 1.1


def _world_ingress(m: TimingModel) -> Iterator[tuple[str, str, int, int, str]]:
    """(address, description, from port, to port, protocol) of every ingress open to the world."""
    for r in m.of_type("aws_security_group"):
        for i, rule in enumerate(r["values"].get("ingress") or []):
            if set(WORLD) & set((rule.get("cidr_blocks") or []) + (rule.get("ipv6_cidr_blocks") or [])):
                yield (
                    f"{r['address']}.ingress[{i}]",
                    rule.get("description") or "",
                    rule["from_port"],
                    rule["to_port"],
                    rule["protocol"],
                )
    for r in m.of_type("aws_vpc_security_group_ingress_rule"):
        v = r["values"]
        if v.get("cidr_ipv4") in WORLD or v.get("cidr_ipv6") in WORLD:
            yield (
                r["address"],
                v.get("description") or "",
                v.get("from_port") or 0,
                v.get("to_port") or 65535,
                v["ip_protocol"],
            )
    for r in m.of_type("aws_security_group_rule"):
        v = r["values"]
        if v.get("type") == "ingress" and set(WORLD) & set(
            (v.get("cidr_blocks") or []) + (v.get("ipv6_cidr_blocks") or [])
        ):
            yield r["address"], v.get("description") or "", v["from_port"], v["to_port"], v["protocol"]


def _public(m: TimingModel) -> bool:
    """Whether the plan has an internet-facing balancer (``internal`` unset reads as facing it)."""
    return any(not r["values"].get("internal") for r in m.of_type("aws_lb"))


def _world_ports(m: TimingModel) -> set[int]:
    ports: set[int] = set()
    for _, _, lo, hi, protocol in _world_ingress(m):
        ports |= set(range(0, 65536)) if str(protocol) in ("-1", "all") else set(range(lo, hi + 1))
    return ports


def _public_listeners(m: TimingModel) -> list[dict]:
    if not _public(m):
        return []
    open_ports = _world_ports(m)
    return [r for r in m.of_type("aws_lb_listener") if r["values"].get("port") in open_ports]


def r_public_https(m: TimingModel) -> list[Violation]:
    """Every listener the internet reaches serves HTTPS with TLS 1.2 or later, or only redirects to
    HTTPS (its default action a redirect to protocol HTTPS)."""
    out = []
    for r in _public_listeners(m):
        v = r["values"]
        where = f"{m.source}: {r['address']} (port {v.get('port')})"
        if v.get("protocol") == "HTTPS":
            policy = v.get("ssl_policy") or ""
            if not MODERN_TLS.search(policy):
                out.append(
                    Violation(
                        "public-listeners-serve-https",
                        f"{where}.ssl_policy",
                        policy or None,
                        "a security policy that accepts TLS 1.2 and 1.3 only",
                        "ELBSecurityPolicy-TLS13-1-2-2021-06",
                    )
                )
            continue
        actions = v.get("default_action") or []
        redirects = [a for a in actions if a.get("type") == "redirect"]
        if (
            len(actions) == 1
            and redirects
            and all((d.get("protocol") or "").upper() == "HTTPS" for d in redirects[0].get("redirect") or [{}])
        ):
            continue
        out.append(
            Violation(
                "public-listeners-serve-https",
                f"{where}.protocol",
                v.get("protocol"),
                "HTTPS (with the certificate_arn variable), or HTTP whose only action redirects to HTTPS: "
                "a public listener must not carry requests in clear",
                "HTTPS",
            )
        )
    return out


def _service(address: str) -> str | None:
    found = re.search(r'module\.service\["([^"]+)"\]', address)
    return found.group(1) if found else None


def _vpc_networks(m: TimingModel) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(r["values"]["cidr_block"]) for r in m.of_type("aws_vpc") if r["values"].get("cidr_block")
    ]


def _inside(cidr: str, networks: list) -> bool:
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return any(net.version == n.version and net.subnet_of(n) for n in networks)


def r_admin_not_public(m: TimingModel) -> list[Violation]:
    """A service without authentication of its own is routed on a public balancer only behind the
    balancer's sign-in (an authenticate action before the forward) or for the VPC's addresses only
    (a source-ip condition inside the VPC's range)."""
    if not _public(m):
        return []
    vpc = _vpc_networks(m)
    out = []
    for r in m.of_type("aws_lb_listener_rule"):
        service = _service(r["address"])
        if service not in UNAUTHENTICATED:
            continue
        v = r["values"]
        types = [a.get("type") for a in sorted(v.get("action") or [], key=lambda a: a.get("order") or 0)]
        signed = any(t in SIGN_IN_ACTIONS for t in types[: types.index("forward")] if "forward" in types)
        sources = [
            s for c in v.get("condition") or [] for cond in c.get("source_ip") or [] for s in cond.get("values") or []
        ]
        if signed or (sources and all(_inside(s, vpc) for s in sources)):
            continue
        out.append(
            Violation(
                "no-public-unauthenticated-admin",
                f"{m.source}: mlflow_sign_in ({r['address']})",
                {"actions": types, "source_ip": sources or "any address"},
                f"{UNAUTHENTICATED[service]}; its route admits only the VPC "
                f"({', '.join(map(str, vpc)) or 'its CIDR'}) or signs users in first ({' or '.join(SIGN_IN_ACTIONS)})",
                "mlflow_sign_in = null (VPC only) or a Cognito user pool",
            )
        )
    return out


def r_world_listener_ports(m: TimingModel) -> list[Violation]:
    """The world reaches only the ports of the public balancer's listeners, over TCP."""
    listener_ports = {r["values"]["port"] for r in _public_listeners(m) if r["values"].get("port")}
    out = []
    for address, description, lo, hi, protocol in _world_ingress(m):
        ports = set(range(0, 65536)) if str(protocol) in ("-1", "all") else set(range(lo, hi + 1))
        if str(protocol) in ("tcp", "6") and ports <= listener_ports:
            continue
        out.append(
            Violation(
                "world-reaches-only-listener-ports",
                f"{m.source}: {address}" + (f" ({description})" if description else ""),
                f"{protocol} {lo}-{hi} from {' or '.join(WORLD)}",
                f"TCP to a public listener's port only ({', '.join(map(str, sorted(listener_ports))) or 'none'})",
                "the VPC's CIDR or another security group as the source",
            )
        )
    return out


def _statements(policy: str | None) -> list[dict]:
    if not policy:
        return []
    statements = json.loads(policy).get("Statement") or []
    return statements if isinstance(statements, list) else [statements]


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _allows(statement: dict, principal_service: str, action: str) -> bool:
    if statement.get("Effect") != "Allow":
        return False
    principal = statement.get("Principal")
    services = _as_list(principal.get("Service")) if isinstance(principal, dict) else []
    if principal_service not in services and principal != "*":
        return False
    return any(fnmatch.fnmatchcase(action, pattern) for pattern in _as_list(statement.get("Action")))


def key_admits_cloudwatch(policy: str | None) -> list[str]:
    """The actions CloudWatch needs on a topic's key that the key policy does not allow it."""
    statements = _statements(policy)
    return [a for a in CLOUDWATCH_KEY_ACTIONS if not any(_allows(s, CLOUDWATCH, a) for s in statements)]


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
        if key_id and key_id.startswith("alias/aws/"):
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
        named = [a for a in topic["refs"].get("kms_master_key_id", []) if a in keys]
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


def denies_plain_http(statement: dict, bucket: str) -> bool:
    condition = (statement.get("Condition") or {}).get("Bool") or {}
    principal = statement.get("Principal")
    resources = set(_as_list(statement.get("Resource")))
    return (
        statement.get("Effect") == "Deny"
        and str(condition.get("aws:SecureTransport")).lower() == "false"
        and (principal == "*" or (isinstance(principal, dict) and "*" in _as_list(principal.get("AWS"))))
        and any(a in ("*", "s3:*") for a in _as_list(statement.get("Action")))
        and {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} <= resources
    )


def r_artifacts_tls(m: TimingModel) -> list[Violation]:
    """Every bucket's policy denies every request made over plain HTTP, to the bucket and its objects."""
    statements = [s for r in m.of_type("aws_s3_bucket_policy") for s in _statements(r["values"].get("policy"))]
    return [
        Violation(
            "artifacts-deny-plain-http",
            f"{m.source}: {r['address']} (its aws_s3_bucket_policy)",
            "no policy statement denying aws:SecureTransport = false",
            "a Deny of s3:* to * on the bucket and its objects when aws:SecureTransport is false",
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": TLS_ONLY},
        )
        for r in m.of_type("aws_s3_bucket")
        if not any(denies_plain_http(s, r["values"].get("bucket") or "") for s in statements)
    ]


def r_images_immutable(m: TimingModel) -> list[Violation]:
    """Every container names its image by digest or by a content tag (hex), never a mutable tag."""
    return [
        Violation(
            "images-immutable",
            f"{m.source}: {s.name}_image (services.{s.name}, container {c.name})",
            c.image,
            "an immutable reference: <repo>@sha256:<64 hex> or <repo>:<7-64 hex content tag> (a mutable tag lets "
            "two tasks of one revision run different code, and a rollback run today's image)",
            f"mlplatform-{s.name}:<content tag>",
        )
        for s in m.services.values()
        for c in s.containers
        if c.image is not None and not IMMUTABLE_IMAGE.match(c.image)
    ]


# actions AWS authorises only on "*" (no resource-level permissions)
STAR_ONLY_ACTIONS = ("ecr:GetAuthorizationToken",)
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[^:]*:[^:]*:secret:(?P<name>.+)$")


def _key_of(address: str) -> str | None:
    found = re.search(r'\["([^"]+)"\]$', address)
    return found.group(1) if found else None


def r_least_privilege(m: TimingModel) -> list[Violation]:
    """Every inline policy of the plan's roles names its resources (no ``*`` but for actions AWS
    authorises only on ``*``), and a role kept for one service (its policy keyed by the service)
    reads no secret another service owns; a policy the plan cannot show must not name the
    services' secrets as a whole."""
    secrets = {
        r["values"].get("name"): _service_of_secret(r["values"].get("name") or "", m)
        for r in m.of_type("aws_secretsmanager_secret")
    }
    out = []
    for r in m.of_type("aws_iam_role_policy"):
        where = f"{m.source}: {r['address']}.policy"
        owner = _key_of(r["address"])
        owner = owner if owner in m.services else None
        policy = r["values"].get("policy")
        if policy is None:
            broad = [ref for ref in r["refs"].get("policy", []) if ref.endswith("service_secret_arns")]
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
        for i, st in enumerate(_statements(policy)):
            if st.get("Effect") != "Allow":
                continue
            actions = _as_list(st.get("Action"))
            resources = _as_list(st.get("Resource"))
            if "*" in resources and not all(a in STAR_ONLY_ACTIONS for a in actions):
                out.append(
                    Violation(
                        "roles-least-privilege",
                        f"{where} Statement[{i}]",
                        {"Action": actions, "Resource": "*"},
                        "the resources the actions need, by ARN (a * reaches every resource of the account)",
                        "the ARNs of its own bucket, secret or log group",
                    )
                )
                continue
            for resource in resources:
                matched = SECRET_ARN.match(resource)
                if not matched:
                    continue
                others = sorted(
                    {
                        svc
                        for name, svc in secrets.items()
                        if svc and svc != owner and fnmatch.fnmatchcase(f"{name}-AbCdEf", matched["name"])
                    }
                )
                if others:
                    out.append(
                        Violation(
                            "roles-least-privilege",
                            f"{where} Statement[{i}]",
                            resource,
                            f"only {owner}'s own secret: this reads the secret of {', '.join(others)}"
                            if owner
                            else f"a role of one service: this one reads the secrets of {', '.join(others)}",
                            f"arn:...:secret:<{owner or 'its service'}'s secret name>-??????",
                        )
                    )
    return out


def _service_of_secret(name: str, m: TimingModel) -> str | None:
    """The service a secret belongs to: the one its name carries as a path segment (<name>/<service>/...)."""
    parts = name.split("/")
    return next((s for s in m.services if s in parts[1:]), None)


RULES = {
    "public-listeners-serve-https": r_public_https,
    "no-public-unauthenticated-admin": r_admin_not_public,
    "world-reaches-only-listener-ports": r_world_listener_ports,
    "alarm-topic-key-admits-cloudwatch": r_alarm_topic_key,
    "artifacts-deny-plain-http": r_artifacts_tls,
    "images-immutable": r_images_immutable,
    "roles-least-privilege": r_least_privilege,
}
