"""The rules for data in transit: nothing that carries the platform's data or credentials travels in
clear or to a server the client has not verified.

Read as AWS and libpq apply them (docs/security.md gives the sources):
- S3 serves plain HTTP unless the bucket policy denies requests whose ``aws:SecureTransport`` is
  false;
- RDS for PostgreSQL accepts connections in clear unless its parameter group sets
  ``rds.force_ssl = 1`` (the default only from version 16);
- a client encrypts but verifies nothing with libpq's default ``sslmode=prefer``; with a CA bundle
  and ``require`` or ``verify-ca`` it checks the chain but not the host name, so any certificate the
  bundle's CAs ever issued (another instance's, in any account) passes; only ``verify-full`` checks
  that the certificate names the host connected to."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from harness.plan.policies import as_list, policy_statements
from harness.plan.timing import Container, TimingModel
from harness.plan.violation import Violation
from harness.stack.postgres import IMAGE_BUNDLE

TLS_ONLY = {"Bool": {"aws:SecureTransport": "false"}}  # the condition that refuses plain HTTP
# how the platform's containers are told of a database: under each prefix, its pieces (HOST ...)
# or a whole URL (the variable named here; the TLS settings beside it or in its query)
DATABASE_SETTINGS = {
    "API_DATABASE_": "API_DATABASE_URL",
    "MLFLOW_DATABASE_": "MLFLOW_BACKEND_STORE_URI",
    "DBINIT_": None,
}


def denies_plain_http(statement: dict, bucket: str) -> bool:
    condition = (statement.get("Condition") or {}).get("Bool") or {}
    principal = statement.get("Principal")
    resources = set(as_list(statement.get("Resource")))
    return (
        statement.get("Effect") == "Deny"
        and [str(v).lower() for v in as_list(condition.get("aws:SecureTransport"))] == ["false"]
        and (principal == "*" or (isinstance(principal, dict) and "*" in as_list(principal.get("AWS"))))
        and any(a in ("*", "s3:*") for a in as_list(statement.get("Action")))
        and {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"} <= resources
    )


def r_artifacts_tls(m: TimingModel) -> list[Violation]:
    """Every bucket's policy denies every request made over plain HTTP, to the bucket and its objects."""
    statements = [s for r in m.of_type("aws_s3_bucket_policy") for s in policy_statements(r["values"].get("policy"))]
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


def r_database_tls(m: TimingModel) -> list[Violation]:
    """Every Postgres instance refuses connections without TLS: its parameter group sets
    ``rds.force_ssl = 1`` (RDS for PostgreSQL turns it on by default only from version 16)."""
    groups = {r["values"].get("name"): r for r in m.of_type("aws_db_parameter_group")}
    out = []
    for r in m.of_type("aws_db_instance"):
        v = r["values"]
        if v.get("engine") != "postgres":
            continue
        major = int(str(v.get("engine_version") or "0").split(".")[0] or 0)
        name = v.get("parameter_group_name")
        group = groups.get(name)
        params = {p.get("name"): str(p.get("value")) for p in (group["values"].get("parameter") or [])} if group else {}
        if params.get("rds.force_ssl") == "1" or (
            name is None and not r["unknown"].get("parameter_group_name") and major >= 16
        ):
            continue
        out.append(
            Violation(
                "database-requires-tls",
                f"{m.source}: {r['address']}.parameter_group_name",
                {"parameter_group": name, "rds.force_ssl": params.get("rds.force_ssl", "0 (the default)")},
                f"a parameter group of the plan with rds.force_ssl = 1: PostgreSQL {major or '?'} on RDS accepts "
                "connections in clear otherwise, dbinit's password among them",
                'aws_db_parameter_group with parameter { name = "rds.force_ssl", value = "1" }',
            )
        )
    return out


def database_clients(c: Container) -> list[str]:
    """The prefixes under which ``c`` is told of a database (``API_DATABASE_``, ``DBINIT_``)."""
    names = set(c.environment) | set(c.secrets)
    return sorted(p for p, whole in DATABASE_SETTINGS.items() if p + "HOST" in names or whole in names)


def tls_settings(c: Container, prefix: str) -> tuple[str | None, str | None]:
    """(sslmode, sslrootcert) of ``c``'s database under ``prefix``: the settings beside the URL, or
    its query when the URL is plainly in the environment (a URL in a secret shows nothing)."""
    env = c.checked_environment()
    mode, bundle = env.get(prefix + "SSLMODE"), env.get(prefix + "SSLROOTCERT")
    whole = DATABASE_SETTINGS[prefix]
    if whole and c.environment.get(whole):
        query = dict(parse_qsl(urlsplit(str(c.environment[whole])).query))
        mode, bundle = mode or query.get("sslmode"), bundle or query.get("sslrootcert")
    return mode, bundle


def r_database_clients_verify(m: TimingModel) -> list[Violation]:
    """Every container that connects to the database verifies the server: ``sslmode=verify-full``
    against the RDS CA bundle the images carry (``IMAGE_BUNDLE``; a test holds the Dockerfiles to
    it), so that neither the service's password nor
    dbinit's master password is sent to a server that only claims to be the database."""
    out = []
    for s in m.services.values():
        for c in s.containers:
            for prefix in database_clients(c):
                mode, bundle = tls_settings(c, prefix)
                if mode == "verify-full" and bundle == IMAGE_BUNDLE:
                    continue
                out.append(
                    Violation(
                        "database-clients-verify-tls",
                        f"{m.source}: {s.name} task, container {c.name}",
                        {prefix + "SSLMODE": mode, prefix + "SSLROOTCERT": bundle},
                        f"verify-full and the RDS CA bundle the images carry ({IMAGE_BUNDLE}): libpq's "
                        "default (prefer) sends the password to whoever answers, require or verify-ca accept "
                        "any certificate the bundle's CAs issued, and another bundle lacks RDS's CAs",
                        {
                            prefix + "SSLMODE": "verify-full",
                            prefix + "SSLROOTCERT": IMAGE_BUNDLE,
                        },
                    )
                )
    return out


RULES = {
    "artifacts-deny-plain-http": r_artifacts_tls,
    "database-requires-tls": r_database_tls,
    "database-clients-verify-tls": r_database_clients_verify,
}
