"""The rules that say whether the planned platform is safe to expose: who can reach what, what
travels in clear, whether an alarm can reach anyone, and whether a task runs the
code it names (which secrets each role may read: ``harness.plan.privilege``; what travels in
clear: ``harness.plan.transit``; what the policies of keys and buckets admit:
``harness.plan.policies``).

Read as AWS applies them (docs/security.md gives the sources):
- a listener of an internet-facing balancer is public on every port its security groups open to
  ``0.0.0.0/0`` or ``::/0``; the ``source-ip`` condition of a listener rule sees the client's own
  address, so a rule that admits only the VPC's range is reached by nobody outside it;
- a tag such as ``latest`` can point at new code at any time: two tasks of one task definition
  may run different images, and a rollback returns to whatever the tag names today."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable, Iterator
from typing import Any

from harness.plan.timing import TimingModel, config_address
from harness.plan.violation import Violation

# address space the internet cannot send from: RFC 1918, shared (CGNAT), loopback, link-local, ULA
PRIVATE_SPACE = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16")
) + tuple(ipaddress.ip_network(n) for n in ("fc00::/7", "fe80::/10", "::1/128"))
# services that serve everyone who reaches them: no sign-in of their own
UNAUTHENTICATED = {
    "mlflow": "MLflow has no authentication: whoever reaches it reads, changes and deletes experiments, "
    "runs and artifacts",
}
SIGN_IN_ACTIONS = ("authenticate-cognito", "authenticate-oidc")
# paths of a public service that are for the platform's own eyes: answered before its route
INTERNAL_PATHS = {"api": ("/metrics", "/health/deep")}
# what CloudWatch must be allowed to do with a topic's key to publish an alarm to it
IMMUTABLE_IMAGE = re.compile(r"^[^@\s]+(@sha256:[0-9a-f]{64}|:[0-9a-f]{7,64})$")

# ELB security policies that refuse TLS 1.0 and 1.1 (TLS13-1-0 and TLS13-1-1 accept them)
MODERN_TLS = re.compile(r"^ELBSecurityPolicy-(TLS13-1-[23]|TLS-1-2|FS-1-2)-")


def _subnet(net: Any, of: Any) -> bool:
    """``net`` lies within ``of`` (networks of either IP version; different versions never do)."""
    return bool(net.version == of.version and net.subnet_of(of))


def _from_internet(cidrs: list[str]) -> bool:
    """Whether any of ``cidrs`` holds an address outside private address space (``0.0.0.0/0``, but
    also ``0.0.0.0/1`` + ``128.0.0.0/1``, or one office's public range)."""
    return any(_valid(c) and not _inside(c, PRIVATE_SPACE) for c in cidrs)


def _world_ingress(m: TimingModel) -> Iterator[tuple[str, str, int, int, str]]:
    """(address, description, from port, to port, protocol) of every ingress the internet reaches."""
    for r in m.of_type("aws_security_group"):
        for i, rule in enumerate(r["values"].get("ingress") or []):
            if _from_internet((rule.get("cidr_blocks") or []) + (rule.get("ipv6_cidr_blocks") or [])):
                yield (
                    f"{r['address']}.ingress[{i}]",
                    rule.get("description") or "",
                    rule["from_port"],
                    rule["to_port"],
                    rule["protocol"],
                )
    for r in m.of_type("aws_vpc_security_group_ingress_rule"):
        v = r["values"]
        if _from_internet([c for c in (v.get("cidr_ipv4"), v.get("cidr_ipv6")) if c]):
            yield (
                r["address"],
                v.get("description") or "",
                v.get("from_port") or 0,
                v.get("to_port") or 65535,
                v["ip_protocol"],
            )
    for r in m.of_type("aws_security_group_rule"):
        v = r["values"]
        if v.get("type") == "ingress" and _from_internet(
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
            if not MODERN_TLS.match(policy):
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
    # rules are evaluated before a listener's default action: a rule on a plain-HTTP listener serves in clear
    plain = {config_address(r["address"]): r for r in _public_listeners(m) if r["values"].get("protocol") != "HTTPS"}
    for rule in m.of_type("aws_lb_listener_rule"):
        on = [config_address(ref) for ref in rule["refs"].get("listener_arn", [])]
        hit = sorted({a for a in on if a in plain})
        if hit:
            out.append(
                Violation(
                    "public-listeners-serve-https",
                    f"{m.source}: {rule['address']}.listener_arn",
                    hit,
                    "a rule on an HTTPS listener: the ALB evaluates rules before a listener's default action, so "
                    "a rule on the redirect listener serves plain HTTP",
                    "module.alb.listener_arn (HTTPS)",
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


def _valid(cidr: str) -> bool:
    try:
        ipaddress.ip_network(cidr, strict=False)
        return True
    except ValueError:
        return False


def _inside(cidr: str, networks: Iterable[Any]) -> bool:
    """``cidr`` lies within one of ``networks`` (an unreadable CIDR lies nowhere)."""
    return _valid(cidr) and any(_subnet(ipaddress.ip_network(cidr, strict=False), n) for n in networks)


def r_admin_not_public(m: TimingModel) -> list[Violation]:
    """A service without authentication of its own is routed on a public balancer only behind the
    balancer's sign-in (an authenticate action before the forward that does not let the
    unauthenticated through, and a way out to the identity provider) or for the VPC's addresses
    only (a source-ip condition inside the VPC's range); a public service's internal paths (the
    api's metrics and deep health) are answered by the listener before its route."""
    if not _public(m):
        return []
    vpc = _vpc_networks(m)
    out = []
    signs_in = False
    for r in m.of_type("aws_lb_listener_rule"):
        service = _service(r["address"])
        if service not in UNAUTHENTICATED:
            continue
        v = r["values"]
        actions = sorted(v.get("action") or [], key=lambda a: a.get("order") or 0)
        types = [a.get("type") for a in actions]
        signed = (
            any(
                a.get("type") in SIGN_IN_ACTIONS
                and all(
                    (c.get("on_unauthenticated_request") or "authenticate") != "allow"
                    for c in (a.get("authenticate_cognito") or []) + (a.get("authenticate_oidc") or [])
                )
                for a in actions[: types.index("forward")]
            )
            if "forward" in types
            else False
        )
        sources = [
            s for c in v.get("condition") or [] for cond in c.get("source_ip") or [] for s in cond.get("values") or []
        ]
        signs_in = signs_in or any(a.get("type") in SIGN_IN_ACTIONS for a in actions)
        if signed:
            continue
        if sources and all(_inside(s, vpc) for s in sources):
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
    if signs_in and not _alb_reaches_internet_https(m):
        out.append(
            Violation(
                "no-public-unauthenticated-admin",
                f"{m.source}: mlflow_sign_in (the ALB's security group egress)",
                "no HTTPS egress beyond the VPC",
                "tcp 443 to the internet: the ALB calls the identity provider's token and user-info "
                "endpoints, and every sign-in fails without them",
                "alb_https_egress = true",
            )
        )
    forwards = {
        _service(r["address"]): r["values"].get("priority")
        for r in m.of_type("aws_lb_listener_rule")
        if any(a.get("type") == "forward" for a in r["values"].get("action") or [])
    }
    for service, paths in INTERNAL_PATHS.items():
        route = forwards.get(service)
        for path in paths:
            if not any(_answers_before(r, path, route) for r in m.of_type("aws_lb_listener_rule")):
                out.append(
                    Violation(
                        "no-public-unauthenticated-admin",
                        f"{m.source}: aws_lb_listener_rule.internal_paths (path {path})",
                        f"routed to {service}",
                        f"answered by the listener itself (fixed-response) before {service}'s route (priority "
                        f"{route}): it is for the platform's own eyes, read inside the VPC",
                        f'a fixed-response rule with path_pattern "{path}" and a priority below {route}',
                    )
                )
    return out


def _answers_before(rule: dict, path: str, route: int | None) -> bool:
    """Whether a listener rule answers ``path`` itself (a fixed response) ahead of priority ``route``."""
    v = rule["values"]
    patterns = [
        p for c in v.get("condition") or [] for pp in c.get("path_pattern") or [] for p in pp.get("values") or []
    ]
    fixed = any(a.get("type") == "fixed-response" for a in v.get("action") or [])
    return (
        fixed
        and any(fnmatch.fnmatchcase(path, p) for p in patterns)
        and (route is None or (v.get("priority") or 0) < route)
    )


def _alb_reaches_internet_https(m: TimingModel) -> bool:
    for r in m.of_type("aws_security_group"):
        if ".alb" not in r["address"]:
            continue
        for rule in r["values"].get("egress") or []:
            if rule["from_port"] <= 443 <= rule["to_port"] and _from_internet(rule.get("cidr_blocks") or []):
                return True
    return False


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
                f"{protocol} {lo}-{hi} from the internet",
                f"TCP to a public listener's port only ({', '.join(map(str, sorted(listener_ports))) or 'none'})",
                "the VPC's CIDR or another security group as the source",
            )
        )
    return out


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


RULES = {
    "public-listeners-serve-https": r_public_https,
    "no-public-unauthenticated-admin": r_admin_not_public,
    "world-reaches-only-listener-ports": r_world_listener_ports,
    "images-immutable": r_images_immutable,
}
