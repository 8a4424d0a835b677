# Blue/green through CodeDeploy (deployment_strategy = "blue_green"): traffic moves to the
# green target group once its tasks pass the ALB check, by the configured traffic shifting; the
# original tasks are kept for the termination wait; a failed deployment, or one of the service's
# alarms firing before the original tasks are gone, rolls back.
resource "aws_iam_role" "codedeploy" {
  count = local.blue_green ? 1 : 0
  name  = "${local.full}-codedeploy"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Principal = { Service = "codedeploy.amazonaws.com" }, Action = "sts:AssumeRole" }]
  })
}

resource "aws_iam_role_policy_attachment" "codedeploy" {
  count      = local.blue_green ? 1 : 0
  role       = aws_iam_role.codedeploy[0].name
  policy_arn = "arn:aws:iam::aws:policy/AWSCodeDeployRoleForECSLimited" # not the full one: it reads every bucket and invokes every function
}

resource "aws_codedeploy_app" "this" {
  count            = local.blue_green ? 1 : 0
  name             = local.full
  compute_platform = "ECS"
}

resource "aws_codedeploy_deployment_group" "this" {
  count                  = local.blue_green ? 1 : 0
  app_name               = aws_codedeploy_app.this[0].name
  deployment_group_name  = local.full
  service_role_arn       = aws_iam_role.codedeploy[0].arn
  deployment_config_name = var.blue_green.traffic

  auto_rollback_configuration {
    enabled = true
    events  = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM"]
  }

  alarm_configuration {
    enabled = true
    alarms  = var.rollback_alarms
  }

  blue_green_deployment_config {
    deployment_ready_option {
      action_on_timeout = "CONTINUE_DEPLOYMENT"
    }
    terminate_blue_instances_on_deployment_success {
      action                           = "TERMINATE"
      termination_wait_time_in_minutes = var.blue_green.termination_wait_minutes
    }
  }

  deployment_style {
    deployment_option = "WITH_TRAFFIC_CONTROL"
    deployment_type   = "BLUE_GREEN"
  }

  ecs_service {
    cluster_name = element(split("/", var.cluster_arn), 1)
    service_name = aws_ecs_service.this.name
  }

  load_balancer_info {
    target_group_pair_info {
      prod_traffic_route {
        listener_arns = [var.listener_arn]
      }
      dynamic "test_traffic_route" {
        for_each = local.test_listener ? [var.test_listener_arn] : []
        content {
          listener_arns = [test_traffic_route.value]
        }
      }
      target_group {
        name = aws_lb_target_group.this[0].name
      }
      target_group {
        name = aws_lb_target_group.this[1].name
      }
    }
  }
}
