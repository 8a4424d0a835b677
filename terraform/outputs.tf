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
