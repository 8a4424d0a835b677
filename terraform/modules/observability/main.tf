# Health-check failures made visible: metric filters over the services' logs, alarms on them and
# on the ALB's unhealthy-host count of every target group (both under blue/green), a topic the
# alarms notify, and one dashboard.
variable "name" {
  description = "Name prefix."
  type        = string
}
variable "api_log_group" {
  description = "The api's log group (one JSON line per request)."
  type        = string
}
variable "mlflow_log_group" {
  description = "MLflow's log group (one JSON line per request, as the api's)."
  type        = string
}
variable "health_paths" {
  description = "Service name to the path its health checks request: the filters count failures of that path, whatever it is (a check on the wrong path fails there, and is counted)."
  type        = map(string)
}
variable "alb_arn_suffix" {
  description = "ALB ARN suffix for the CloudWatch dimensions."
  type        = string
}
variable "target_groups" {
  description = "Service name to its target groups' ARN suffixes (two under blue/green)."
  type        = map(list(string))
}
variable "cluster_name" {
  description = "The ECS cluster (running tasks and deployments on the dashboard)."
  type        = string
}
variable "alarm_subscriptions" {
  description = "Who the alarm topic notifies: protocol (email, https, sqs, lambda, ...) and endpoint."
  type = list(object({
    protocol = string
    endpoint = string
  }))
}
variable "region" {
  description = "AWS region of the dashboard's metrics."
  type        = string
}
variable "account_id" {
  description = "The AWS account that administers the alarm topic's key."
  type        = string
}
variable "alarm_actions" {
  description = "More ARNs the alarms notify, beside the topic."
  type        = list(string)
}

locals {
  namespace = "${var.name}/health"
  actions   = concat([aws_sns_topic.alarms.arn], var.alarm_actions)
  # one entry per target group: "api-0", "api-1" (blue/green), "mlflow-0", ...
  target_groups = merge([for svc, tgs in var.target_groups : {
    for i, tg in tgs : "${svc}-${i}" => { service = svc, target_group = tg }
  }]...)
}

# The topic is encrypted with a key of its own: CloudWatch publishes an alarm to an encrypted topic
# only when the key's policy lets cloudwatch.amazonaws.com use it, and the AWS-managed key
# (alias/aws/sns) has a policy nobody can change, so a topic under it never receives an alarm
# (rule alarm-topic-key-admits-cloudwatch; docs/runbook.md).
resource "aws_kms_key" "alarms" {
  description             = "${var.name}: the alarm topic's key (CloudWatch may use it to publish alarms)"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "TheAccountAdministersTheKey"
        Effect    = "Allow"
        Principal = { AWS = "arn:aws:iam::${var.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchPublishesAlarms"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        # only for this account's alarms (the confused-deputy guard)
        Condition = { StringEquals = { "aws:SourceAccount" = var.account_id } }
      },
    ]
  })
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = aws_kms_key.alarms.arn
}

resource "aws_sns_topic_subscription" "alarms" {
  count     = length(var.alarm_subscriptions)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = var.alarm_subscriptions[count.index].protocol
  endpoint  = var.alarm_subscriptions[count.index].endpoint
}

resource "aws_cloudwatch_log_metric_filter" "api_health_failures" {
  name           = "${var.name}-api-health-failures"
  log_group_name = var.api_log_group
  pattern        = "{ ($.path = \"${var.health_paths["api"]}\") && ($.status = 503) }"
  metric_transformation {
    name          = "ApiHealthCheckFailures"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
  }
}

# A shared dependency outage does not fail the load balancer's check (the api reports it as warn, so
# the fleet is not drained): this filter counts those answers, so the outage still raises an alarm.
resource "aws_cloudwatch_log_metric_filter" "api_dependency_failures" {
  name           = "${var.name}-api-dependency-failures"
  log_group_name = var.api_log_group
  pattern        = "{ ($.path = \"${var.health_paths["api"]}\") && ($.health = \"warn\") }"
  metric_transformation {
    name          = "ApiDependencyFailures"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_log_metric_filter" "mlflow_health_failures" {
  name           = "${var.name}-mlflow-health-failures"
  log_group_name = var.mlflow_log_group
  pattern        = "{ ($.path = \"${var.health_paths["mlflow"]}\") && ($.status != 200) }"
  metric_transformation {
    name          = "MlflowHealthCheckFailures"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "health_failures" {
  for_each = {
    api              = aws_cloudwatch_log_metric_filter.api_health_failures.metric_transformation[0].name
    api-dependencies = aws_cloudwatch_log_metric_filter.api_dependency_failures.metric_transformation[0].name
    mlflow           = aws_cloudwatch_log_metric_filter.mlflow_health_failures.metric_transformation[0].name
  }
  alarm_name          = "${var.name}-${each.key}-health-check-failures"
  alarm_description   = "${each.key}: health checks answered a failure at least 3 times in 5 minutes"
  namespace           = local.namespace
  metric_name         = each.value
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 3
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "unhealthy_hosts" {
  for_each            = local.target_groups
  alarm_name          = "${var.name}-${each.key}-unhealthy-hosts"
  alarm_description   = "${each.value.service}: the ALB sees an unhealthy target for 2 minutes"
  namespace           = "AWS/ApplicationELB"
  metric_name         = "UnHealthyHostCount"
  dimensions          = { LoadBalancer = var.alb_arn_suffix, TargetGroup = each.value.target_group }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# When tasks cannot start (image pull, secrets, dbinit), no target registers and nothing is logged:
# the alarms above stay quiet. Container Insights' running-task count pages then (missing data
# counts as none running).
resource "aws_cloudwatch_metric_alarm" "no_running_tasks" {
  for_each            = toset(keys(var.target_groups))
  alarm_name          = "${var.name}-${each.key}-no-running-tasks"
  alarm_description   = "${each.key}: no task running for 2 minutes"
  namespace           = "ECS/ContainerInsights"
  metric_name         = "RunningTaskCount"
  dimensions          = { ClusterName = var.cluster_name, ServiceName = each.key }
  statistic           = "Minimum"
  period              = 60
  evaluation_periods  = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_dashboard" "health" {
  dashboard_name = "${var.name}-health"
  dashboard_body = jsonencode({
    widgets = concat(
      [{
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title   = "Health-check failures (from the logs)"
          region  = var.region
          stat    = "Sum"
          period  = 60
          metrics = [[local.namespace, "ApiHealthCheckFailures"], [local.namespace, "ApiDependencyFailures"], [local.namespace, "MlflowHealthCheckFailures"]]
        }
      }],
      [for key, g in local.target_groups : {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "${key}: healthy and unhealthy targets"
          region  = var.region
          stat    = "Maximum"
          period  = 60
          metrics = [["AWS/ApplicationELB", "HealthyHostCount", "LoadBalancer", var.alb_arn_suffix, "TargetGroup", g.target_group], ["AWS/ApplicationELB", "UnHealthyHostCount", "LoadBalancer", var.alb_arn_suffix, "TargetGroup", g.target_group]]
        }
      }],
      [for key, g in local.target_groups : {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "${key}: target response time"
          region  = var.region
          stat    = "p99"
          period  = 60
          metrics = [["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", var.alb_arn_suffix, "TargetGroup", g.target_group]]
        }
      }],
      [for svc in keys(var.target_groups) : {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "${svc}: running tasks and deployments"
          region  = var.region
          stat    = "Maximum"
          period  = 60
          metrics = [["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", var.cluster_name, "ServiceName", svc], ["ECS/ContainerInsights", "DeploymentCount", "ClusterName", var.cluster_name, "ServiceName", svc]]
        }
      }]
    )
  })
}


output "dashboard_name" {
  value = aws_cloudwatch_dashboard.health.dashboard_name
}
output "alarm_topic_arn" {
  value = aws_sns_topic.alarms.arn
}
