variable "name" {
  description = "Prefix of every resource name."
  type        = string
  default     = "mlplatform"
}

variable "environment" {
  description = "staging or prod; used in names and tags."
  type        = string
  validation {
    condition     = contains(["staging", "prod"], var.environment)
    error_message = "environment must be staging or prod."
  }
}

variable "region" {
  description = "AWS region."
  type        = string
  default     = "eu-west-1"
}

variable "aws_endpoint" {
  description = "Only for mocked deployments: the URL of a moto server; null in real use."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "Refuse to delete the ALB; false only for throwaway or mocked environments."
  type        = bool
  default     = true
}

variable "offline" {
  description = "Plan without AWS credentials (the harness's timing checks); never for a real apply."
  type        = bool
  default     = false
}

variable "availability_zones" {
  description = "Two availability zones for the subnets; empty means <region>a and <region>b."
  type        = list(string)
  default     = []
}

variable "domain_name" {
  description = "Host name clients use for the ALB (a DNS record points it at alb_dns_name); certificate_arn must cover it."
  type        = string
  default     = "mlplatform.example.internal"
}

variable "certificate_arn" {
  description = "The ACM certificate (issued) for domain_name that the ALB's HTTPS listeners present; port 80 only redirects to them."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:[a-z0-9-]+:[0-9]{12}:certificate/[0-9a-f-]+$", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate's ARN (arn:aws:acm:<region>:<account>:certificate/<id>)."
  }
}

variable "alb_access_logs" {
  description = "The account's log bucket (with the ELB delivery policy) and prefix for the ALB's access logs; null: none."
  type = object({
    bucket = string
    prefix = string
  })
  default = null
}

variable "web_acl_arn" {
  description = "The account's regional WAF web ACL to associate with the ALB; null: none."
  type        = string
  default     = null
}

variable "mlflow_sign_in" {
  description = <<-EOT
    MLflow has no authentication of its own. null (the default): its route on the ALB admits only
    the VPC's addresses, so nobody on the internet reaches it (the api calls it by its internal
    name; people reach it from inside the VPC). An object: its route is public, and the ALB signs
    users in through this Cognito user pool first (user_pool_arn, user_pool_client_id,
    user_pool_domain).
  EOT
  type = object({
    user_pool_arn       = string
    user_pool_client_id = string
    user_pool_domain    = string
  })
  default = null
}

variable "vpc_cidr" {
  description = "CIDR of the VPC; two public and two private /24s are cut from it."
  type        = string
  default     = "10.40.0.0/16"
}

# An image is named by what it holds: a digest, or a content tag (hex, as the harness tags its
# builds, or a commit id). A mutable tag (latest, v1, main) lets two tasks of one task definition
# run different code, and a rollback return to whatever the tag points at today.
variable "api_image" {
  description = "Image of the api (services/api/Dockerfile), by digest (<repo>@sha256:<64 hex>) or content tag (<repo>:<7-64 hex>)."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+(@sha256:[0-9a-f]{64}|:[0-9a-f]{7,64})$", var.api_image))
    error_message = "api_image must name an immutable image: <repo>@sha256:<64 hex> or <repo>:<7-64 hex content tag>, not latest or another mutable tag."
  }
}

variable "mlflow_image" {
  description = "Image of MLflow (services/mlflow/Dockerfile), by digest (<repo>@sha256:<64 hex>) or content tag (<repo>:<7-64 hex>)."
  type        = string
  validation {
    condition     = can(regex("^[^@\\s]+(@sha256:[0-9a-f]{64}|:[0-9a-f]{7,64})$", var.mlflow_image))
    error_message = "mlflow_image must name an immutable image: <repo>@sha256:<64 hex> or <repo>:<7-64 hex content tag>, not latest or another mutable tag."
  }
}

variable "planned_writes_per_second" {
  description = "The write rate (POST /runs per second, every task together) the environment is sized for. Not used by AWS: the plan rule mlflow-cpu-fits-planned-writes checks MLflow's tasks take it, from MLflow's measured writes per vCPU (docs/mlflow.md)."
  type        = number
  validation {
    condition     = var.planned_writes_per_second >= 0
    error_message = "planned_writes_per_second: expected a rate of 0 or more writes per second."
  }
}

variable "log_retention_days" {
  description = "CloudWatch log retention in days (a value CloudWatch accepts; never 0 = forever)."
  type        = number
  default     = 30
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of CloudWatch's values (1, 3, 5, 7, 14, 30, 60, 90, ... 3653)."
  }
}

variable "deployment_strategy" {
  description = "rolling (ECS, with the circuit breaker) or blue_green (CodeDeploy, two target groups)."
  type        = string
  default     = "rolling"
  validation {
    condition     = contains(["rolling", "blue_green"], var.deployment_strategy)
    error_message = "deployment_strategy must be rolling or blue_green."
  }
}

variable "blue_green" {
  description = "With deployment_strategy = blue_green: CodeDeploy's traffic shifting (one of its predefined ECS configurations), the minutes the original tasks are kept after the shift, the window in which an alarm can still roll back (the service's health-check-failure and unhealthy-host alarms stop and roll back a deployment), and the port of the ALB's test listener, on which the new tasks take test traffic before any production traffic moves (reachable from inside the VPC only)."
  type = object({
    traffic                  = optional(string, "CodeDeployDefault.ECSAllAtOnce")
    termination_wait_minutes = optional(number, 5)
    test_port                = optional(number, 8080)
  })
  default = {}
  validation {
    condition = contains([
      "CodeDeployDefault.ECSAllAtOnce",
      "CodeDeployDefault.ECSLinear10PercentEvery1Minutes",
      "CodeDeployDefault.ECSLinear10PercentEvery3Minutes",
      "CodeDeployDefault.ECSCanary10Percent5Minutes",
      "CodeDeployDefault.ECSCanary10Percent15Minutes",
    ], var.blue_green.traffic)
    error_message = "blue_green.traffic must be one of CodeDeploy's predefined ECS configurations (CodeDeployDefault.ECSAllAtOnce, ...ECSLinear10PercentEvery1Minutes, ...ECSLinear10PercentEvery3Minutes, ...ECSCanary10Percent5Minutes, ...ECSCanary10Percent15Minutes)."
  }
  validation {
    condition     = var.blue_green.termination_wait_minutes >= 0 && var.blue_green.termination_wait_minutes <= 2880 && floor(var.blue_green.termination_wait_minutes) == var.blue_green.termination_wait_minutes
    error_message = "blue_green.termination_wait_minutes must be a whole number of minutes from 0 to 2880 (CodeDeploy's limit)."
  }
  validation {
    condition     = var.blue_green.test_port >= 1 && var.blue_green.test_port <= 65535 && floor(var.blue_green.test_port) == var.blue_green.test_port && var.blue_green.test_port != 80
    error_message = "blue_green.test_port must be a port from 1 to 65535 other than 80 (the production listener's)."
  }
}

variable "alarm_actions" {
  description = "More ARNs the health alarms notify, beside the platform's own topic."
  type        = list(string)
  default     = []
}

variable "alarm_subscriptions" {
  description = "Who the alarm topic notifies (protocol and endpoint, e.g. email and an on-call address)."
  type = list(object({
    protocol = string
    endpoint = string
  }))
  validation {
    condition     = length(var.alarm_subscriptions) > 0
    error_message = "alarm_subscriptions must name at least one subscriber: an alarm that notifies nobody is not an alarm."
  }
}

variable "egress" {
  description = "How tasks in the private subnets reach AWS (ECR, S3, CloudWatch Logs, Secrets Manager): endpoints, nat (one gateway) or nat_per_az."
  type        = string
  default     = "endpoints"
  validation {
    condition     = contains(["endpoints", "nat", "nat_per_az"], var.egress)
    error_message = "egress must be endpoints, nat or nat_per_az."
  }
}

variable "database" {
  description = <<-EOT
    Postgres for both services: an RDS PostgreSQL 15 instance (instance_class, allocated_storage GB,
    multi_az, backup_retention_days 1-35, deletion_protection), or an existing server
    (existing = { host, port, master_secret_arn }: a Secrets Manager secret with the master
    username and password as JSON keys). Credentials are never set here.
  EOT
  type = object({
    instance_class        = string
    allocated_storage     = number
    multi_az              = bool
    backup_retention_days = number
    deletion_protection   = bool
    existing = optional(object({
      host              = string
      port              = number
      master_secret_arn = string
    }))
  })
  validation {
    condition     = var.database.backup_retention_days >= 1 && var.database.backup_retention_days <= 35
    error_message = "database.backup_retention_days must be 1-35 (0 would turn backups off)."
  }
  validation {
    condition     = var.database.allocated_storage >= 20 && var.database.allocated_storage <= 65536
    error_message = "database.allocated_storage must be 20-65536 GB."
  }
}

# Every timing of both services. Ranges are AWS's; the cross-checks (ALB timeout below interval,
# grace period against boot time) are the ones the incident needed. harness/plan/rules.py re-checks
# the planned values against the measured boot times.
variable "services" {
  description = <<-EOT
    Per service (api, mlflow): image port, task size, health path, container health check
    (interval 5-300, timeout 2-60, retries 1-10, start_period 0-300 s), ALB target-group check
    (interval 5-300, timeout 2-120 and below interval, thresholds 2-10, matcher), grace period,
    deregistration delay (0-3600 s), stop timeout (2-120 s on Fargate), rolling limits, circuit breaker,
    and boot_budget: the seconds the service is allowed from task start to answering its health path
    on Fargate (image pull, interpreter start, waiting for its dependencies; 1-3600). The timing rules
    judge the plan against it and fail when a measured or estimated boot exceeds it.
  EOT
  type = map(object({
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
    boot_budget          = number
  }))

  validation {
    condition     = alltrue([for s in values(var.services) : s.container_interval >= 5 && s.container_interval <= 300])
    error_message = "services.*.container_interval must be 5-300 s (ECS healthCheck.interval)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.container_timeout >= 2 && s.container_timeout <= 60])
    error_message = "services.*.container_timeout must be 2-60 s (ECS healthCheck.timeout)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.container_retries >= 1 && s.container_retries <= 10])
    error_message = "services.*.container_retries must be 1-10 (ECS healthCheck.retries)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.container_start >= 0 && s.container_start <= 300])
    error_message = "services.*.container_start must be 0-300 s (ECS healthCheck.startPeriod)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.alb_interval >= 5 && s.alb_interval <= 300])
    error_message = "services.*.alb_interval must be 5-300 s."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.alb_timeout >= 2 && s.alb_timeout <= 120])
    error_message = "services.*.alb_timeout must be 2-120 s."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.alb_timeout < s.alb_interval])
    error_message = "services.*.alb_timeout must be below alb_interval (AWS rejects it at apply; Terraform validate and plan do not check it)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.healthy_threshold >= 2 && s.healthy_threshold <= 10 && s.unhealthy_threshold >= 2 && s.unhealthy_threshold <= 10])
    error_message = "services.*.healthy_threshold and unhealthy_threshold must be 2-10."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.deregistration_delay >= 0 && s.deregistration_delay <= 3600])
    error_message = "services.*.deregistration_delay must be 0-3600 s."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.stop_timeout >= 2 && s.stop_timeout <= 120])
    error_message = "services.*.stop_timeout must be 2-120 s on Fargate."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.grace_period >= 0 && s.grace_period <= 2147483647])
    error_message = "services.*.grace_period must be 0-2147483647 s."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.min_healthy_percent >= 0 && s.min_healthy_percent <= 100 && s.max_percent >= 100 && s.max_percent <= 200])
    error_message = "services.*.min_healthy_percent must be 0-100 and max_percent 100-200."
  }
  validation {
    condition = alltrue([for s in values(var.services) : contains([
      "256/512", "256/1024", "256/2048", "512/1024", "512/2048", "512/3072", "512/4096",
      "1024/2048", "1024/3072", "1024/4096", "1024/5120", "1024/6144", "1024/7168", "1024/8192",
      "2048/4096", "2048/5120", "2048/6144", "2048/7168", "2048/8192", "2048/16384",
    "4096/8192", "4096/16384", "4096/30720"], "${s.cpu}/${s.memory}")])
    error_message = "services.*.cpu/memory must be a Fargate combination (e.g. 512/1024, 1024/2048, 2048/4096)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : s.boot_budget >= 1 && s.boot_budget <= 3600])
    error_message = "services.*.boot_budget must be 1-3600 s (task start to the health path answering)."
  }
  validation {
    condition     = alltrue([for s in values(var.services) : startswith(s.health_path, "/")])
    error_message = "services.*.health_path must start with /."
  }
  validation {
    condition     = toset(keys(var.services)) == toset(["api", "mlflow"])
    error_message = "services must define exactly api and mlflow."
  }
}
