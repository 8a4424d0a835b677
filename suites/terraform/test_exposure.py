"""The rules that say whether the plan is safe to expose (harness.plan.exposure): each holds on the
shipped environments, and each finding of the review, put back into a copy of the Terraform,
fails its rule naming the file and field."""

import pytest

from harness.paths import environment_file, environments, shown
from harness.plan import policies, privilege, transit
from harness.plan.exposure import RULES
from harness.plan.rules import check

pytestmark = pytest.mark.terraform
ENVIRONMENTS = tuple(environments())  # every rule runs on every environment file present
STAGING = shown(environment_file("staging"))  # as the rules name it

# The plan as the review found it: MLflow routed from anywhere, HTTP only on port 80, the topic
# under AWS's key, no TLS-only bucket policy and no public access block, images by mutable tag,
# every task's execution role reading every service's secret, the api's metrics and deep health
# public, the database open to the world and accepting connections in clear, and its clients
# connecting without verifying it (no sslmode: libpq's prefer).
REVIEWED = {
    "main.tf": (
        (r'    SSLMODE     = "verify-full"\n    SSLROOTCERT = "/etc/ssl/certs/rds-global-bundle.pem"\n', ""),
        (
            r'route_sources        = each\.key == "mlflow" && var\.mlflow_sign_in == null \? \[var\.vpc_cidr\] : null',
            "route_sources = null",
        ),
        (r"    api    = var\.api_image\n", '    api    = "mlplatform-api:latest"\n'),
        (r'resource "aws_lb_listener_rule" "internal_paths" \{\n(.|\n)*?\n\}\n', ""),
        (
            r'Resource = "arn:aws:secretsmanager:\$\{var\.region\}:\$\{local\.account_id\}:secret:'
            r'\$\{module\.database\.service_secret_names\[each\.key\]\}-\?\?\?\?\?\?"',
            "Resource = concat([module.database.master_secret_arn], values(module.database.service_secret_arns))",
        ),
    ),
    "modules/alb/main.tf": (
        (r"merge\(\{ https = 443 \}", "merge({ https = 80 }"),
        (
            r'  protocol          = "HTTPS"\n  ssl_policy        = var\.ssl_policy\n'
            r"  certificate_arn   = var\.certificate_arn\n",
            '  protocol          = "HTTP"\n',
        ),
        (r'resource "aws_lb_listener" "redirect" \{(.|\n)*?\n\}\n\nmoved \{(.|\n)*?\n\}\n', ""),
    ),
    "modules/network/main.tf": (
        (r'for_each = \{ HTTPS = 443, "HTTP \(redirected to HTTPS\)" = 80 \}', "for_each = { HTTP = 80 }"),
        (
            r'("from the tasks"\n(?:.*\n){3})    security_groups = \[aws_security_group\.tasks\.id\]',
            r'\1    cidr_blocks = ["0.0.0.0/0"]',
        ),
    ),
    "modules/observability/main.tf": (
        (r"kms_master_key_id = aws_kms_key\.alarms\.arn", 'kms_master_key_id = "alias/aws/sns"'),
    ),
    "modules/database/main.tf": ((r"  parameter_group_name += aws_db_parameter_group\.this\[0\]\.name\n", ""),),
    "modules/artifacts/main.tf": (
        (r'resource "aws_s3_bucket_policy" "this" \{\n(.|\n)*?\n\}\n', ""),
        (r'resource "aws_s3_bucket_public_access_block" "this" \{\n(.|\n)*?\n\}\n', ""),
    ),
}


@pytest.fixture(scope="module")
def reviewed(make_edited_model):
    return check(make_edited_model("staging", REVIEWED))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_shipped_environments_are_safe_to_expose(make_model, env):
    model = make_model(env)
    found = {
        rule: [str(v) for v in fn(model)]
        for rule, fn in {**RULES, **policies.RULES, **privilege.RULES, **transit.RULES}.items()
    }
    assert not any(found.values()), found


def test_mlflow_routed_from_anywhere_without_sign_in_fails(reviewed):
    found = {v.where.split(": ", 1)[1]: v for v in reviewed["no-public-unauthenticated-admin"]}
    v = found['mlflow_sign_in (module.service["mlflow"].aws_lb_listener_rule.this["prod"])']
    assert v.value == {"actions": ["forward"], "source_ip": "any address"} and "10.40.0.0/16" in v.expected


def test_the_apis_metrics_and_deep_health_on_the_public_listener_fail(reviewed):
    found = sorted(v.where.split(": ", 1)[1] for v in reviewed["no-public-unauthenticated-admin"])
    assert found == [
        "aws_lb_listener_rule.internal_paths (path /health/deep)",
        "aws_lb_listener_rule.internal_paths (path /metrics)",
        'mlflow_sign_in (module.service["mlflow"].aws_lb_listener_rule.this["prod"])',
    ], found


def test_a_database_that_accepts_plain_connections_fails(reviewed):
    (v,) = reviewed["database-requires-tls"]
    assert v.where.endswith("module.database.aws_db_instance.this[0].parameter_group_name")
    assert v.value == {"parameter_group": None, "rds.force_ssl": "0 (the default)"} and "PostgreSQL 15" in v.expected


def test_database_clients_that_do_not_verify_the_server_fail(reviewed):
    found = {(v.where.split(": ", 1)[1], tuple(v.value)) for v in reviewed["database-clients-verify-tls"]}
    assert found == {
        ("api task, container api", ("API_DATABASE_SSLMODE", "API_DATABASE_SSLROOTCERT")),
        ("api task, container dbinit", ("DBINIT_SSLMODE", "DBINIT_SSLROOTCERT")),
        ("mlflow task, container mlflow", ("MLFLOW_DATABASE_SSLMODE", "MLFLOW_DATABASE_SSLROOTCERT")),
        ("mlflow task, container dbinit", ("DBINIT_SSLMODE", "DBINIT_SSLROOTCERT")),
    }, found


@pytest.mark.parametrize(
    "tls, fails",
    [
        ({"SSLMODE": "verify-full", "SSLROOTCERT": "/etc/ssl/certs/rds-global-bundle.pem"}, False),
        ({"SSLMODE": "require", "SSLROOTCERT": "/etc/ssl/certs/rds-global-bundle.pem"}, True),  # chain, not name
        ({"SSLMODE": "verify-ca", "SSLROOTCERT": "/etc/ssl/certs/rds-global-bundle.pem"}, True),
        ({"SSLMODE": "verify-full"}, True),
        ({"SSLMODE": "verify-full", "SSLROOTCERT": "/etc/ssl/certs/ca-certificates.crt"}, True),  # no RDS CA there
        ({}, True),
    ],
)
def test_only_verify_full_with_a_bundle_verifies_the_database(tls, fails):
    from types import SimpleNamespace

    from harness.plan.timing import Container

    env = {"DBINIT_HOST": None, "DBINIT_NAME": "api", **{f"DBINIT_{k}": v for k, v in tls.items()}}
    secrets = {"DBINIT_USER": "arn:user", "DBINIT_PASSWORD": "arn:pw"}
    dbinit = Container("dbinit", False, (), env, secrets, ())
    other = Container("sidecar", False, (), {"SIDECAR_HOST": "x", "SIDECAR_NAME": "y"}, {}, ())  # not a database
    model = SimpleNamespace(source="plan", services={"api": SimpleNamespace(name="api", containers=(dbinit, other))})
    found = transit.r_database_clients_verify(model)
    assert [v.where for v in found] == (["plan: api task, container dbinit"] if fails else [])


@pytest.mark.parametrize(
    "environment, secrets, fails",
    [
        (
            {
                "API_DATABASE_URL": "postgresql://u@db/api?sslmode=verify-full&sslrootcert=%2Fetc%2Fssl%2Fcerts%2Frds-global-bundle.pem"
            },
            {},
            False,
        ),
        ({"API_DATABASE_URL": "postgresql://u@db/api"}, {}, True),  # a whole URL without TLS
        ({}, {"API_DATABASE_URL": "arn:secret"}, True),  # a URL in a secret shows nothing: say it beside
        (
            {"API_DATABASE_SSLMODE": "verify-full", "API_DATABASE_SSLROOTCERT": "/etc/ssl/certs/rds-global-bundle.pem"},
            {"API_DATABASE_URL": "arn:secret"},
            False,
        ),
    ],
)
def test_a_database_given_as_a_whole_url_is_a_client_too(environment, secrets, fails):
    from types import SimpleNamespace

    from harness.plan.timing import Container

    api = Container("api", True, (), environment, secrets, ())
    model = SimpleNamespace(source="plan", services={"api": SimpleNamespace(name="api", containers=(api,))})
    assert bool(transit.r_database_clients_verify(model)) is fails


def test_a_bucket_without_its_public_access_block_fails(reviewed):
    (v,) = reviewed["buckets-private"]
    assert v.where.endswith("module.artifacts.aws_s3_bucket.this (its aws_s3_bucket_public_access_block)")
    assert not any(v.value.values())


def test_a_public_listener_serving_plain_http_fails(reviewed):
    (v,) = reviewed["public-listeners-serve-https"]
    assert v.where == f'{STAGING}: module.alb.aws_lb_listener.this["https"] (port 80).protocol'
    assert v.value == "HTTP"


def test_the_world_reaching_the_database_port_fails(reviewed):
    (v,) = reviewed["world-reaches-only-listener-ports"]
    assert v.where.startswith(f"{STAGING}: module.network.aws_security_group.database.ingress[0]")
    assert v.value == "tcp 5432-5432 from the internet" and "(80)" in v.expected


def test_the_alarm_topic_under_awss_managed_key_fails(reviewed):
    (v,) = reviewed["alarm-topic-key-admits-cloudwatch"]
    assert v.where.endswith("module.observability.aws_sns_topic.alarms.kms_master_key_id")
    assert v.value == "alias/aws/sns" and "no alarm would ever be delivered" in v.expected


def test_a_bucket_that_serves_plain_http_fails(reviewed):
    (v,) = reviewed["artifacts-deny-plain-http"]
    assert v.where.endswith("module.artifacts.aws_s3_bucket.this (its aws_s3_bucket_policy)")


def test_an_image_by_mutable_tag_fails(reviewed, terraform):
    found = reviewed["images-immutable"]
    assert {v.where.rsplit(": ", 1)[1] for v in found} == {
        "api_image (services.api, container api)",
        "api_image (services.api, container dbinit)",
    }
    assert {v.value for v in found} == {"mlplatform-api:latest"}
    for value in ("mlplatform-api:latest", "mlplatform-api:v1.2", "mlplatform-api"):
        error = terraform.plan_error(str(environment_file("staging")), offline=True, api_image=value)
        assert error and "api_image must name an immutable image" in " ".join(error.split()), value


def test_the_same_rules_hold_against_a_subtler_plan(make_edited_model):
    """HTTP that redirects to HTTP, a TLS policy that still accepts TLS 1.0, a rule on the redirect
    listener, MLflow admitted from an office's public range, the database opened to the internet in
    two halves, a key whose policy forgets CloudWatch: each is named."""
    found = check(
        make_edited_model(
            "staging",
            {
                "modules/alb/main.tf": (
                    (
                        r'      port        = "443"\n      protocol    = "HTTPS"',
                        '      port        = "443"\n      protocol    = "HTTP"',
                    ),
                    (
                        r'default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"',
                        'default     = "ELBSecurityPolicy-TLS13-1-0-2021-06"',
                    ),
                    (
                        r'output "listener_arn" \{',
                        'output "redirect_listener_arn" {\n  value = aws_lb_listener.redirect.arn\n}\n'
                        'output "listener_arn" {',
                    ),
                ),
                "main.tf": (
                    (r"\? \[var\.vpc_cidr\] : null", '? ["203.0.113.0/24"] : null'),
                    (
                        r'(resource "aws_lb_listener_rule" "internal_paths" \{\n'
                        r"  listener_arn = module\.alb\.)listener_arn",
                        r"\1redirect_listener_arn",
                    ),
                ),
                "modules/network/main.tf": (
                    (
                        r'("from the tasks"\n(?:.*\n){3})    security_groups = \[aws_security_group\.tasks\.id\]',
                        r'\1    cidr_blocks = ["0.0.0.0/1", "128.0.0.0/1"]',
                    ),
                ),
                "modules/observability/main.tf": (
                    (
                        r'Principal = \{ Service = "cloudwatch\.amazonaws\.com" \}',
                        'Principal = { Service = "sns.amazonaws.com" }',
                    ),
                ),
            },
        )
    )
    https = sorted(v.where.rsplit(": ", 1)[1] for v in found["public-listeners-serve-https"])
    assert https == [
        "aws_lb_listener_rule.internal_paths.listener_arn",
        "module.alb.aws_lb_listener.redirect (port 80).protocol",
        'module.alb.aws_lb_listener.this["https"] (port 443).ssl_policy',
    ], found["public-listeners-serve-https"]
    (admin,) = found["no-public-unauthenticated-admin"]
    assert admin.value == {"actions": ["forward"], "source_ip": ["203.0.113.0/24"]}
    (world,) = found["world-reaches-only-listener-ports"]
    assert "aws_security_group.database.ingress[0]" in world.where and world.value == "tcp 5432-5432 from the internet"
    (key,) = found["alarm-topic-key-admits-cloudwatch"]
    assert key.where.endswith("module.observability.aws_kms_key.alarms.policy")
    assert key.value == "no Allow of kms:Decrypt, kms:GenerateDataKey to cloudwatch.amazonaws.com"


POOL = {
    "user_pool_arn": "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEfGhI",
    "user_pool_client_id": "1example23456789",
    "user_pool_domain": "mlplatform-staging",
}


def test_mlflow_behind_the_balancers_sign_in_is_public_and_passes(terraform):
    from harness.plan.timing import from_plan
    from pytest_harness.terraform import TYPICAL

    plan = terraform.plan(str(environment_file("staging")), offline=True, mlflow_sign_in=POOL)
    model = from_plan(plan, "staging.tfvars", TYPICAL)
    (rule,) = [r for r in model.of_type("aws_lb_listener_rule") if '"mlflow"' in r["address"]]
    assert [a["type"] for a in rule["values"]["action"]] == ["authenticate-cognito", "forward"]
    assert not [c for c in rule["values"]["condition"] if c["source_ip"]], "public, behind sign-in"
    assert RULES["no-public-unauthenticated-admin"](model) == []


def test_a_sign_in_that_lets_everyone_through_or_cannot_reach_its_provider_fails(harness_session, edit_terraform):
    from harness.plan.terraform import Terraform
    from harness.plan.timing import from_plan
    from pytest_harness.terraform import TYPICAL

    source = edit_terraform(
        {
            "modules/ecs_service/main.tf": (
                (
                    r"user_pool_domain    = action\.value\.user_pool_domain\n",
                    "user_pool_domain    = action.value.user_pool_domain\n"
                    '        on_unauthenticated_request = "allow"\n',
                ),
            ),
            "main.tf": ((r"alb_https_egress = var\.mlflow_sign_in != null", "alb_https_egress = false"),),
        }
    )
    tf = Terraform(harness_session.mkdtemp("tf-sign-in"), source=source)
    model = from_plan(
        tf.plan(str(environment_file("staging")), offline=True, mlflow_sign_in=POOL), "staging.tfvars", TYPICAL
    )
    found = {v.where.split(": ", 1)[1]: v for v in RULES["no-public-unauthenticated-admin"](model)}
    assert sorted(found) == [
        'mlflow_sign_in (module.service["mlflow"].aws_lb_listener_rule.this["prod"])',
        "mlflow_sign_in (the ALB's security group egress)",
    ], found


def test_an_execution_role_that_reads_every_services_secret_fails(reviewed):
    found = reviewed["roles-least-privilege"]
    assert sorted(v.where.rsplit(": ", 1)[1] for v in found) == [
        'aws_iam_role_policy.execution_secrets["api"].policy',
        'aws_iam_role_policy.execution_secrets["mlflow"].policy',
    ]
    assert all("module.database.service_secret_arns" in v.value for v in found), found


def test_a_secret_of_another_service_a_broad_resource_a_wildcard_action_or_a_broad_managed_policy_fails(
    make_edited_model,
):
    found = check(
        make_edited_model(
            "staging",
            {
                "main.tf": (
                    (r"\$\{module\.database\.service_secret_names\[each\.key\]\}-", "${local.name}/*/database-"),
                    (
                        r'(resource "aws_iam_role_policy_attachment" "execution" \{\n(?:.*\n){2})  policy_arn = ".*"',
                        r'\1  policy_arn = "arn:aws:iam::aws:policy/SecretsManagerReadWrite"',
                    ),
                ),
                "modules/artifacts/main.tf": (
                    (r"resources = \[local\.arn\]", 'resources = ["arn:aws:s3:::*"]'),
                    (r'actions   = \["s3:GetObject", "s3:PutObject", "s3:DeleteObject"\]', 'actions   = ["s3:*"]'),
                ),
            },
        )
    )["roles-least-privilege"]
    by_where = {v.where.rsplit(": ", 1)[1]: v for v in found}
    assert sorted(by_where) == [
        'aws_iam_role_policy.execution_secrets["api"].policy Statement[0]',
        'aws_iam_role_policy.execution_secrets["mlflow"].policy Statement[0]',
        "aws_iam_role_policy.mlflow_artifacts.policy Statement[0]",
        "aws_iam_role_policy.mlflow_artifacts.policy Statement[1]",
        'aws_iam_role_policy_attachment.execution["api"].policy_arn',
        'aws_iam_role_policy_attachment.execution["mlflow"].policy_arn',
    ], found
    api = by_where['aws_iam_role_policy.execution_secrets["api"].policy Statement[0]']
    assert "this reads the secret of mlflow" in api.expected
    assert by_where["aws_iam_role_policy.mlflow_artifacts.policy Statement[0]"].value == {
        "Action": ["s3:ListBucket"],
        "Resource": ["arn:aws:s3:::*"],
    }
    assert by_where["aws_iam_role_policy.mlflow_artifacts.policy Statement[1]"].value == {"Action": ["s3:*"]}


def test_the_rules_read_aws_semantics_not_spelling():
    """The helpers on their own: TLS policies that still accept 1.0/1.1, the internet in two halves,
    a Deny that cancels CloudWatch's Allow, the TLS condition written as a list."""
    from harness.plan.exposure import MODERN_TLS, _from_internet
    from harness.plan.policies import key_admits_cloudwatch
    from harness.plan.transit import denies_plain_http

    assert [
        bool(MODERN_TLS.match(p))
        for p in (
            "ELBSecurityPolicy-TLS13-1-2-2021-06",
            "ELBSecurityPolicy-TLS13-1-3-2021-06",
            "ELBSecurityPolicy-FS-1-2-Res-2020-10",
            "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
            "ELBSecurityPolicy-TLS13-1-0-2021-06",
            "ELBSecurityPolicy-TLS13-1-1-2021-06",
            "ELBSecurityPolicy-2016-08",
        )
    ] == [True, True, True, True, False, False, False]
    assert _from_internet(["0.0.0.0/1"]) and _from_internet(["81.2.69.0/24"]) and _from_internet(["::/0"])
    assert not _from_internet(["10.40.0.0/16", "fd00::/8", "100.64.0.0/10"])
    allow = {
        "Effect": "Allow",
        "Principal": {"Service": "cloudwatch.amazonaws.com"},
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Resource": "*",
    }
    deny = {**allow, "Effect": "Deny", "Action": "kms:Decrypt"}
    import json

    assert key_admits_cloudwatch(json.dumps({"Statement": [allow]})) == []
    assert key_admits_cloudwatch(json.dumps({"Statement": [allow, deny]})) == ["kms:Decrypt"]
    tls = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::b", "arn:aws:s3:::b/*"]}
    assert denies_plain_http({**tls, "Condition": {"Bool": {"aws:SecureTransport": ["false"]}}}, "b")
    assert not denies_plain_http({**tls, "Condition": {"Bool": {"aws:SecureTransport": ["true"]}}}, "b")
