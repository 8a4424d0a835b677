# staging: timings from the incident's fixes (grace 120 s, MLflow start period 90 s, ALB and
# container checks on the same paths) and task sizes from MLflow's measured memory (docs/mlflow.md).
environment = "staging"
# private tasks reach ECR, S3, CloudWatch Logs and Secrets Manager through a NAT gateway
egress = "nat"
database = {
  instance_class        = "db.t4g.micro"
  allocated_storage     = 20
  multi_az              = false
  backup_retention_days = 7
  deletion_protection   = true
}
# the ALB's HTTPS listeners present this certificate (ACM, issued, covering domain_name)
certificate_arn     = "arn:aws:acm:eu-west-1:123456789012:certificate/0b6f4c9e-5d1a-4d3e-9a51-7f2c1e8b9a10"
alarm_subscriptions = [{ protocol = "email", endpoint = "platform-oncall@example.com" }]
log_retention_days  = 30
# the write rate this environment is sized for (rule mlflow-cpu-fits-planned-writes)
planned_writes_per_second = 5
services = {
  api = {
    port = 8000
    # boot budget: task start to /health answering on Fargate: a ~0.55 GB image pulled, Python and
    # uvicorn started on half a vCPU, Postgres reached (docs/timings.md, "Boot budgets")
    boot_budget          = 30
    cpu                  = 512
    memory               = 1024
    desired_count        = 2
    health_path          = "/health"
    path_patterns        = ["/*"]
    priority             = 100
    container_interval   = 10
    container_timeout    = 5
    container_retries    = 3
    container_start      = 30
    alb_interval         = 15
    alb_timeout          = 6
    healthy_threshold    = 2
    unhealthy_threshold  = 3
    matcher              = "200"
    grace_period         = 120
    deregistration_delay = 30
    stop_timeout         = 30
    min_healthy_percent  = 100
    max_percent          = 200
    circuit_breaker      = true
    rollback             = true
    environment = {
      API_DB_TIMEOUT       = "1.0"
      API_MLFLOW_TIMEOUT   = "1.0"
      API_MLFLOW_RETRIES   = "2"
      API_HEALTH_CACHE_TTL = "2.0"
      API_DRAIN_SECONDS    = "5"
      API_SHUTDOWN_GRACE   = "10"
    }
  }
  mlflow = {
    port = 5000
    # boot budget: task start to /mlflow/health answering on Fargate: a ~1.3 GB image pulled, MLflow
    # started on one vCPU with its schema checked in Postgres (docs/timings.md, "Boot budgets")
    boot_budget          = 75
    cpu                  = 1024
    memory               = 2048
    desired_count        = 1
    health_path          = "/mlflow/health"
    path_patterns        = ["/mlflow", "/mlflow/*"]
    priority             = 10
    container_interval   = 10
    container_timeout    = 5
    container_retries    = 3
    container_start      = 90
    alb_interval         = 15
    alb_timeout          = 5
    healthy_threshold    = 2
    unhealthy_threshold  = 3
    matcher              = "200"
    grace_period         = 120
    deregistration_delay = 30
    stop_timeout         = 30
    min_healthy_percent  = 100
    max_percent          = 200
    circuit_breaker      = true
    rollback             = true
    # sized by measurement (docs/mlflow.md, "Capacity per worker"): one worker takes about 22 of the
    # api's writes per second, two about 30 on two cores (a second worker on one vCPU adds little
    # throughput but keeps one slow request from stalling the rest); 0.8 GB resident with two, so
    # the memory above covers 1.5 x that (rule mlflow-memory-fits)
    environment = {
      MLFLOW_WORKERS                     = "2"
      MLFLOW_SERVER_ENABLE_JOB_EXECUTION = "false"
    }
  }
}
