# One service of the stack: its task definition (the service's container with its health check,
# its settings and secrets, and the dbinit container it waits for), target group (with the ALB
# health check), listener rule, log group, and the ECS service with its grace period, rolling
# limits and circuit breaker; or, for blue_green, CodeDeploy.
variable "name" {
  description = "Name prefix."
  type        = string
}
variable "service" {
  description = "api or mlflow."
  type        = string
}
variable "image" {
  description = "Container image."
  type        = string
}
variable "settings" {
  description = "One entry of the root variable services (see its description)."
  type = object({
    port                 = number
    cpu                  = number
    memory               = number
    desired_count        = number
    health_path          = string
    path_patterns        = list(string)
    priority             = number
    container_interval   = number
    container_timeout    = number
    container_retries    = number
    container_start      = number
    alb_interval         = number
    alb_timeout          = number
    healthy_threshold    = number
    unhealthy_threshold  = number
    matcher              = string
    grace_period         = number
    deregistration_delay = number
    stop_timeout         = number
    min_healthy_percent  = number
    max_percent          = number
    circuit_breaker      = bool
    rollback             = bool
    environment          = map(string)
  })
}
variable "cluster_arn" {
  description = "ECS cluster."
  type        = string
}
variable "vpc_id" {
  description = "VPC of the target group."
  type        = string
}
variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}
variable "security_group_id" {
  description = "The tasks' security group."
  type        = string
}
variable "listener_arn" {
  description = "ALB listener for the path rule."
  type        = string
}
variable "execution_role_arn" {
  description = "Task execution role (pulls the image, writes logs)."
  type        = string
}
variable "log_retention_days" {
  description = "CloudWatch log retention."
  type        = number
}
variable "region" {
  description = "AWS region for the awslogs driver."
  type        = string
}
variable "deployment_strategy" {
  description = "rolling or blue_green."
  type        = string
}
variable "blue_green" {
  description = "Blue/green: CodeDeploy's traffic configuration, the termination wait in minutes and the test listener's port (null: no test listener)."
  type = object({
    traffic                  = string
    termination_wait_minutes = number
    test_port                = optional(number)
  })
}
variable "test_listener_arn" {
  description = "Blue/green: the ALB's test listener (CodeDeploy's test traffic route); null for none."
  type        = string
  default     = null
}
variable "rollback_alarms" {
  description = "Alarm names that stop and roll back a blue/green deployment."
  type        = list(string)
}
variable "secrets" {
  description = "Variable name to secret (valueFrom: a Secrets Manager ARN, with :json-key:: for one key)."
  type        = map(string)
}
variable "init" {
  description = "The dbinit container the service waits for (its settings and secrets); null for none."
  type = object({
    environment = map(string)
    secrets     = map(string)
  })
  default = null
}
variable "task_role_arn" {
  description = "The role the service's code uses for AWS (MLflow: its artifact bucket); null for none."
  type        = string
  default     = null
}
variable "route_sources" {
  description = "Client addresses (CIDRs) the service's route admits; null: any address (the route is public)."
  type        = list(string)
  default     = null
}
variable "sign_in" {
  description = "Sign users in through a Cognito user pool before the route forwards (user_pool_arn, user_pool_client_id, user_pool_domain); null: no sign-in at the balancer."
  type = object({
    user_pool_arn       = string
    user_pool_client_id = string
    user_pool_domain    = string
  })
  default = null
}
variable "service_registry_arn" {
  description = "Cloud Map service that gives the tasks an internal name; null for none."
  type        = string
  default     = null
}

locals {
  full       = "${var.name}-${var.service}"
  blue_green = var.deployment_strategy == "blue_green"
  # known at plan time (the listener's ARN is not): the port decides whether there is one
  test_listener = local.blue_green && var.blue_green.test_port != null
  s             = var.settings
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_158:CloudWatch Logs encrypts at rest by default; a customer-managed KMS key is an account policy choice
  #checkov:skip=CKV_AWS_338:retention is per environment (30 days staging, 90 prod) and checked by the timing rule log-retention-set
  name              = "/ecs/${local.full}"
  retention_in_days = var.log_retention_days
}

locals {
  log_options = {
    awslogs-group         = aws_cloudwatch_log_group.this.name
    awslogs-region        = var.region
    awslogs-stream-prefix = var.service
  }
  service_container = {
    name         = var.service
    image        = var.image
    essential    = true
    portMappings = [{ containerPort = local.s.port, protocol = "tcp" }]
    environment  = [for k, v in local.s.environment : { name = k, value = v }]
    secrets      = [for k, v in var.secrets : { name = k, valueFrom = v }]
    stopTimeout  = local.s.stop_timeout
    dependsOn    = var.init == null ? [] : [{ containerName = "dbinit", condition = "SUCCESS" }]
    healthCheck = {
      command     = ["CMD-SHELL", "curl -fsS -o /dev/null http://localhost:${local.s.port}${local.s.health_path} || exit 1"]
      interval    = local.s.container_interval
      timeout     = local.s.container_timeout
      retries     = local.s.container_retries
      startPeriod = local.s.container_start
    }
    logConfiguration = { logDriver = "awslogs", options = local.log_options }
  }
  # the service's own role and database, made before the service starts (services/common/dbinit.py)
  init_container = var.init == null ? [] : [{
    name             = "dbinit"
    image            = var.image
    essential        = false
    command          = ["python", "-m", "services.common.dbinit"]
    environment      = [for k, v in var.init.environment : { name = k, value = v }]
    secrets          = [for k, v in var.init.secrets : { name = k, valueFrom = v }]
    logConfiguration = { logDriver = "awslogs", options = local.log_options }
  }]
  containers = concat([local.service_container], local.init_container)
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.full
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = local.s.cpu
  memory                   = local.s.memory
  execution_role_arn       = var.execution_role_arn
  task_role_arn            = var.task_role_arn
  container_definitions    = jsonencode(local.containers)
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:TLS ends at the ALB; tasks serve plain HTTP inside private subnets that only the ALB reaches
  count                = local.blue_green ? 2 : 1
  name                 = "${local.full}-${count.index == 0 ? "blue" : "green"}"
  port                 = local.s.port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = local.s.deregistration_delay
  health_check {
    path                = local.s.health_path
    matcher             = local.s.matcher
    interval            = local.s.alb_interval
    timeout             = local.s.alb_timeout
    healthy_threshold   = local.s.healthy_threshold
    unhealthy_threshold = local.s.unhealthy_threshold
  }
}

# Who the route admits: a change replaces the route, since CodeDeploy's swaps make Terraform ignore
# the route's actions (without this, turning sign-in on would drop the source condition and never
# add the sign-in: the service public and unauthenticated).
resource "terraform_data" "route_access" {
  input = { sign_in = var.sign_in, sources = var.route_sources }
}

# The service's route on the production listener and, for blue/green, the same route on the test
# listener (CodeDeploy points that one at the new tasks first).
resource "aws_lb_listener_rule" "this" {
  for_each     = local.test_listener ? { prod = var.listener_arn, test = var.test_listener_arn } : { prod = var.listener_arn }
  listener_arn = each.value
  priority     = local.s.priority
  dynamic "action" {
    for_each = var.sign_in == null ? [] : [var.sign_in]
    content {
      type  = "authenticate-cognito"
      order = 1
      authenticate_cognito {
        user_pool_arn       = action.value.user_pool_arn
        user_pool_client_id = action.value.user_pool_client_id
        user_pool_domain    = action.value.user_pool_domain
      }
    }
  }
  action {
    type             = "forward"
    order            = 2
    target_group_arn = aws_lb_target_group.this[0].arn
  }
  condition {
    path_pattern {
      values = local.s.path_patterns
    }
  }
  # on an internet-facing balancer the client's own address is what source_ip sees: a route that
  # admits only the VPC's range is reached by nobody outside it
  dynamic "condition" {
    for_each = var.route_sources == null ? [] : [var.route_sources]
    content {
      source_ip {
        values = condition.value
      }
    }
  }
  lifecycle {
    ignore_changes       = [action] # CodeDeploy swaps the target group during blue/green
    replace_triggered_by = [terraform_data.route_access]
  }
}

moved {
  from = aws_lb_listener_rule.this
  to   = aws_lb_listener_rule.this["prod"]
}

resource "aws_ecs_service" "this" {
  name                               = var.service
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = local.s.desired_count
  launch_type                        = "FARGATE"
  health_check_grace_period_seconds  = local.s.grace_period
  deployment_minimum_healthy_percent = local.s.min_healthy_percent
  deployment_maximum_percent         = local.s.max_percent

  deployment_controller {
    type = local.blue_green ? "CODE_DEPLOY" : "ECS"
  }

  dynamic "deployment_circuit_breaker" {
    for_each = local.blue_green ? [] : [1]
    content {
      enable   = local.s.circuit_breaker
      rollback = local.s.rollback
    }
  }

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = [var.security_group_id]
    assign_public_ip = false
  }

  dynamic "service_registries" {
    for_each = var.service_registry_arn == null ? [] : [var.service_registry_arn]
    content {
      registry_arn = service_registries.value
    }
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.this[0].arn
    container_name   = var.service
    container_port   = local.s.port
  }

  depends_on = [aws_lb_listener_rule.this]

  lifecycle {
    ignore_changes = [task_definition, load_balancer] # deployments change them, not Terraform
  }
}

output "service_name" {
  value = aws_ecs_service.this.name
}
output "target_group_arns" {
  value = aws_lb_target_group.this[*].arn
}
output "target_group_arn_suffixes" {
  value = aws_lb_target_group.this[*].arn_suffix
}
output "log_group_name" {
  value = aws_cloudwatch_log_group.this.name
}
output "task_definition_arn" {
  value = aws_ecs_task_definition.this.arn
}
output "containers" {
  description = "The task's container definitions as objects: the plan shows what is known before apply (secret ARNs are not)."
  value       = local.containers
}
