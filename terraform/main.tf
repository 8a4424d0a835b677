# The ML platform on ECS Fargate behind one ALB: /mlflow* to MLflow, everything else to the api.
locals {
  name = "${var.name}-${var.environment}"
  images = {
    api    = var.api_image
    mlflow = var.mlflow_image
  }
}

module "network" {
  source     = "./modules/network"
  name       = local.name
  cidr       = var.vpc_cidr
  task_ports = distinct([for s in values(var.services) : s.port])
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
}

resource "aws_ecs_cluster" "this" {
  name = local.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

resource "aws_iam_role" "execution" {
  name = "${local.name}-task-execution"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "ecs-tasks.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

module "service" {
  for_each = var.services
  source   = "./modules/ecs_service"
  name     = local.name
  service  = each.key
  image    = local.images[each.key]
  # the URLs follow from the public host name (known at plan time, so the plan shows the whole
  # container definition); the rest of the environment is in the tfvars
  settings = merge(each.value, { environment = merge(each.value.environment, each.key == "api" ? {
    API_MLFLOW_URL = "http://${var.domain_name}/mlflow"
    } : {
    MLFLOW_ALLOWED_HOSTS = "${var.domain_name},${var.domain_name}:*,localhost,localhost:*,127.0.0.1:*"
  }) })
  cluster_arn         = aws_ecs_cluster.this.arn
  vpc_id              = module.network.vpc_id
  subnet_ids          = module.network.private_subnet_ids
  security_group_id   = module.network.task_security_group_id
  listener_arn        = module.alb.listener_arn
  execution_role_arn  = aws_iam_role.execution.arn
  log_retention_days  = var.log_retention_days
  region              = var.region
  deployment_strategy = var.deployment_strategy
}

module "observability" {
  source           = "./modules/observability"
  name             = local.name
  api_log_group    = module.service["api"].log_group_name
  mlflow_log_group = module.service["mlflow"].log_group_name
  alb_arn_suffix   = module.alb.arn_suffix
  target_groups    = { for k, m in module.service : k => m.target_group_arn_suffixes[0] }
  alarm_actions    = var.alarm_actions
  region           = var.region
}
