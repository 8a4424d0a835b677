# The ML platform on ECS Fargate behind one ALB: /mlflow* to MLflow, everything else to the api.
# Postgres on RDS (each service with its own role, database and secret), MLflow's artifacts in
# S3, the api reaching MLflow by an internal name, private tasks with a way out to AWS, and
# alarms that notify a topic.
locals {
  name       = "${var.name}-${var.environment}"
  account_id = var.offline ? "000000000000" : data.aws_caller_identity.current[0].account_id
  # blue/green: the ALB's test listener, where CodeDeploy sends test traffic to the new tasks
  test_port = var.deployment_strategy == "blue_green" ? var.blue_green.test_port : null
  images = {
    api    = var.api_image
    mlflow = var.mlflow_image
  }
  # the internal name the api calls MLflow by (Cloud Map), admitted by MLflow's allowed hosts
  namespace     = "${local.name}.local"
  mlflow_host   = "mlflow.${local.namespace}"
  mlflow_port   = var.services["mlflow"].port
  database_port = 5432
  # each service's database and role are named after it; the password is in its secret. Every
  # client (the service and its dbinit) verifies the server: TLS with the host name checked
  # against Amazon RDS's CA bundle, which the images carry (docs/security.md)
  database_env = { for k in keys(var.services) : k => {
    HOST        = module.database.host
    PORT        = tostring(module.database.port)
    NAME        = k
    SSLMODE     = "verify-full"
    SSLROOTCERT = "/etc/ssl/certs/rds-global-bundle.pem"
  } }
  prefix = { api = "API_DATABASE_", mlflow = "MLFLOW_DATABASE_" }
  # the roles of the tasks (execution, and MLflow's own) are for ECS tasks to assume
  ecs_tasks_trust = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ecs-tasks.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
  service_environment = {
    api = {
      API_MLFLOW_URL = "http://${local.mlflow_host}:${local.mlflow_port}/mlflow"
    }
    mlflow = {
      MLFLOW_ALLOWED_HOSTS         = "${local.mlflow_host},${local.mlflow_host}:*,localhost,localhost:*,127.0.0.1,127.0.0.1:*"
      MLFLOW_ARTIFACTS_DESTINATION = "s3://${module.artifacts.bucket}/artifacts"
    }
  }
}

# the account (the alarm key's administrator, the secrets' ARNs); offline plans have no AWS to ask
data "aws_caller_identity" "current" {
  count = var.offline ? 0 : 1
}

module "network" {
  source         = "./modules/network"
  name           = local.name
  cidr           = var.vpc_cidr
  region         = var.region
  egress         = var.egress
  task_ports     = distinct([for s in values(var.services) : s.port])
  internal_ports = [local.mlflow_port]
  database_port  = local.database_port
  # the ALB calls the identity provider when it signs users in to MLflow
  alb_https_egress = var.mlflow_sign_in != null
  test_port        = local.test_port
  availability_zones = length(var.availability_zones) > 0 ? var.availability_zones : [
    "${var.region}a", "${var.region}b"
  ]
}

module "alb" {
  source              = "./modules/alb"
  name                = local.name
  subnet_ids          = module.network.public_subnet_ids
  security_group_id   = module.network.alb_security_group_id
  deletion_protection = var.deletion_protection
  test_port           = local.test_port
  certificate_arn     = var.certificate_arn
  access_logs         = var.alb_access_logs
  web_acl_arn         = var.web_acl_arn
}

module "database" {
  source             = "./modules/database"
  name               = local.name
  subnet_ids         = module.network.private_subnet_ids
  security_group_id  = module.network.database_security_group_id
  settings           = var.database
  port               = local.database_port
  services           = keys(var.services)
  generate_passwords = !var.offline
}

module "artifacts" {
  source        = "./modules/artifacts"
  name          = local.name
  force_destroy = !var.deletion_protection
}

resource "aws_service_discovery_private_dns_namespace" "this" {
  name        = local.namespace
  description = "Internal names of the platform's services"
  vpc         = module.network.vpc_id
}

resource "aws_service_discovery_service" "mlflow" {
  name = "mlflow"
  dns_config {
    namespace_id   = aws_service_discovery_private_dns_namespace.this.id
    routing_policy = "MULTIVALUE"
    dns_records {
      type = "A"
      ttl  = 10
    }
  }
  health_check_custom_config {
    failure_threshold = 1
  }
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# Each service's tasks have an execution role of their own (it pulls the image, writes the logs and
# injects the task's secrets): it reads the service's own database secret, named by its name so the
# policy is known at plan time (Secrets Manager appends "-" and six characters to the name), and the
# master secret, which only the task's dbinit container is given (rule roles-least-privilege).
resource "aws_iam_role" "execution" {
  for_each           = var.services
  name               = "${local.name}-${each.key}-task-execution"
  assume_role_policy = local.ecs_tasks_trust
}

resource "aws_iam_role_policy_attachment" "execution" {
  for_each   = var.services
  role       = aws_iam_role.execution[each.key].name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

resource "aws_iam_role_policy" "execution_secrets" {
  for_each = var.services
  name     = "read-its-own-secret"
  role     = aws_iam_role.execution[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "ItsOwnDatabaseSecret"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = "arn:aws:secretsmanager:${var.region}:${local.account_id}:secret:${module.database.service_secret_names[each.key]}-??????"
    }]
  })
}

resource "aws_iam_role_policy" "execution_master" {
  for_each = var.services
  name     = "read-the-master-secret-for-dbinit"
  role     = aws_iam_role.execution[each.key].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid      = "TheMasterSecretForDbinit"
      Effect   = "Allow"
      Action   = ["secretsmanager:GetSecretValue"]
      Resource = module.database.master_secret_arn
    }]
  })
}

resource "aws_iam_role" "mlflow" {
  name               = "${local.name}-mlflow-task"
  assume_role_policy = local.ecs_tasks_trust
}

resource "aws_iam_role_policy" "mlflow_artifacts" {
  name   = "artifact-bucket"
  role   = aws_iam_role.mlflow.id
  policy = module.artifacts.policy_json
}

module "service" {
  for_each = var.services
  source   = "./modules/ecs_service"
  name     = local.name
  service  = each.key
  image    = local.images[each.key]
  settings = merge(each.value, { environment = merge(
    each.value.environment,
    local.service_environment[each.key],
    { for k, v in local.database_env[each.key] : "${local.prefix[each.key]}${k}" => v },
  ) })
  secrets = {
    "${local.prefix[each.key]}USER"     = "${module.database.service_secret_arns[each.key]}:username::"
    "${local.prefix[each.key]}PASSWORD" = "${module.database.service_secret_arns[each.key]}:password::"
  }
  init = {
    environment = { for k, v in local.database_env[each.key] : "DBINIT_${k}" => v }
    secrets = {
      DBINIT_MASTER_USER     = "${module.database.master_secret_arn}:username::"
      DBINIT_MASTER_PASSWORD = "${module.database.master_secret_arn}:password::"
      DBINIT_USER            = "${module.database.service_secret_arns[each.key]}:username::"
      DBINIT_PASSWORD        = "${module.database.service_secret_arns[each.key]}:password::"
    }
  }
  # MLflow has no authentication of its own: its route admits only the VPC, or signs users in first
  route_sources        = each.key == "mlflow" && var.mlflow_sign_in == null ? [var.vpc_cidr] : null
  sign_in              = each.key == "mlflow" ? var.mlflow_sign_in : null
  task_role_arn        = each.key == "mlflow" ? aws_iam_role.mlflow.arn : null
  service_registry_arn = each.key == "mlflow" ? aws_service_discovery_service.mlflow.arn : null
  cluster_arn          = aws_ecs_cluster.this.arn
  vpc_id               = module.network.vpc_id
  subnet_ids           = module.network.private_subnet_ids
  security_group_id    = module.network.task_security_group_id
  listener_arn         = module.alb.listener_arn
  test_listener_arn    = module.alb.test_listener_arn
  execution_role_arn   = aws_iam_role.execution[each.key].arn
  log_retention_days   = var.log_retention_days
  region               = var.region
  deployment_strategy  = var.deployment_strategy
  blue_green           = var.blue_green
  # the observability module's names for the service's own alarms (named, not referenced: that
  # module reads the services' log groups): a failing new version stops and rolls back
  rollback_alarms = concat(
    ["${local.name}-${each.key}-health-check-failures"],
    [for i in range(var.deployment_strategy == "blue_green" ? 2 : 1) : "${local.name}-${each.key}-${i}-unhealthy-hosts"],
  )
}

# The api's Prometheus metrics and its deep health (which names each dependency's error) are for the
# platform's own eyes: the public listener answers them 404 before the api's /* route; they are read
# inside the VPC (rule no-public-unauthenticated-admin).
resource "aws_lb_listener_rule" "internal_paths" {
  listener_arn = module.alb.listener_arn
  priority     = 1
  action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\": \"no route\"}"
      status_code  = "404"
    }
  }
  condition {
    path_pattern {
      values = ["/metrics", "/health/deep"]
    }
  }
}

module "observability" {
  source              = "./modules/observability"
  name                = local.name
  api_log_group       = module.service["api"].log_group_name
  mlflow_log_group    = module.service["mlflow"].log_group_name
  health_paths        = { for k, s in var.services : k => s.health_path }
  alb_arn_suffix      = module.alb.arn_suffix
  target_groups       = { for k, m in module.service : k => m.target_group_arn_suffixes }
  cluster_name        = aws_ecs_cluster.this.name
  alarm_actions       = var.alarm_actions
  alarm_subscriptions = var.alarm_subscriptions
  region              = var.region
  account_id          = local.account_id
}
