# aws_endpoint is set only by the harness's mocked deployments (a moto server on loopback), and
# offline only by its plan-only timing checks: then no call reaches AWS and dummy keys suffice.
locals {
  no_aws = var.offline || var.aws_endpoint != null
}

provider "aws" {
  region                      = var.region
  access_key                  = local.no_aws ? "testing" : null
  secret_key                  = local.no_aws ? "testing" : null
  skip_credentials_validation = local.no_aws
  skip_requesting_account_id  = local.no_aws
  skip_metadata_api_check     = local.no_aws
  s3_use_path_style           = local.no_aws

  dynamic "endpoints" {
    for_each = var.aws_endpoint == null ? [] : [var.aws_endpoint]
    content {
      acm                    = endpoints.value
      ec2                    = endpoints.value
      ecs                    = endpoints.value
      elbv2                  = endpoints.value
      iam                    = endpoints.value
      kms                    = endpoints.value
      logs                   = endpoints.value
      cloudwatch             = endpoints.value
      codedeploy             = endpoints.value
      sts                    = endpoints.value
      applicationautoscaling = endpoints.value
      rds                    = endpoints.value
      secretsmanager         = endpoints.value
      s3                     = endpoints.value
      sns                    = endpoints.value
      servicediscovery       = endpoints.value
    }
  }

  default_tags {
    tags = { project = var.name, environment = var.environment }
  }
}
