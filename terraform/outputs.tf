output "alb_dns_name" {
  description = "Where clients and the e2e/load suites reach the platform (--target-url http://<this>)."
  value       = module.alb.dns_name
}
output "cluster_name" {
  value = aws_ecs_cluster.this.name
}
output "services" {
  description = "Per service: ECS service name, target groups, log group, task definition."
  value = { for k, m in module.service : k => {
    service_name      = m.service_name
    target_group_arns = m.target_group_arns
    log_group_name    = m.log_group_name
    task_definition   = m.task_definition_arn
  } }
}
output "dashboard_name" {
  value = module.observability.dashboard_name
}
output "containers" {
  description = "Per service, its task's container definitions (the service's and dbinit's), as the timing rules read them from the plan."
  value       = { for k, m in module.service : k => m.containers }
}
output "alarm_topic_arn" {
  value = module.observability.alarm_topic_arn
}
output "artifact_bucket" {
  value = module.artifacts.bucket
}
output "database" {
  description = "Where the database is, and the secrets that hold its credentials (never their values)."
  value = {
    host                = module.database.host
    port                = module.database.port
    master_secret_arn   = module.database.master_secret_arn
    service_secret_arns = module.database.service_secret_arns
  }
}
output "mlflow_internal_url" {
  value = "http://${local.mlflow_host}:${local.mlflow_port}/mlflow"
}
