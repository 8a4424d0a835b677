# The one ALB and its HTTP listener. Path rules to each service's target group live in the
# ecs_service module; requests no rule matches get a 404 here.
variable "name" {
  description = "Name prefix."
  type        = string
}
variable "subnet_ids" {
  description = "Public subnets."
  type        = list(string)
}
variable "deletion_protection" {
  description = "Refuse to delete the ALB (off only for throwaway and mocked environments)."
  type        = bool
  default     = true
}
variable "test_port" {
  description = "Port of a second listener for blue/green test traffic (CodeDeploy's test route); null for none."
  type        = number
  default     = null
}
variable "security_group_id" {
  description = "The ALB's security group."
  type        = string
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:access logs need an S3 bucket with a bucket policy for the ELB account; add with the account's log bucket
  #checkov:skip=CKV2_AWS_28:WAF is an account-level choice (web ACL, rules, cost); attach one before exposing the ALB publicly
  #checkov:skip=CKV2_AWS_20:no HTTPS listener yet (needs an ACM certificate for var.domain_name), so there is nothing to redirect to
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [var.security_group_id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
}

# The production listener (port 80) and, for blue/green, the test listener: CodeDeploy points the
# services' rules on it at the new tasks first, so they take test traffic before any production
# request reaches them.
resource "aws_lb_listener" "this" {
  #checkov:skip=CKV_AWS_2:HTTP until an ACM certificate for var.domain_name exists; the health-check timings do not depend on it
  #checkov:skip=CKV_AWS_103:no TLS listener yet (see CKV_AWS_2)
  for_each          = merge({ http = 80 }, var.test_port == null ? {} : { test = var.test_port })
  load_balancer_arn = aws_lb.this.arn
  port              = each.value
  protocol          = "HTTP"
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\": \"no route\"}"
      status_code  = "404"
    }
  }
}

moved {
  from = aws_lb_listener.http
  to   = aws_lb_listener.this["http"]
}

output "arn" {
  value = aws_lb.this.arn
}
output "arn_suffix" {
  value = aws_lb.this.arn_suffix
}
output "dns_name" {
  value = aws_lb.this.dns_name
}
output "listener_arn" {
  value = aws_lb_listener.this["http"].arn
}
output "test_listener_arn" {
  value = try(aws_lb_listener.this["test"].arn, null)
}
