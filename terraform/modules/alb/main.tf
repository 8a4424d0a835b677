# The one ALB: its HTTPS listener (the services' path rules live in the ecs_service module;
# requests no rule matches get a 404 here), port 80 only redirecting to it, and, for blue/green,
# the HTTPS test listener.
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
variable "certificate_arn" {
  description = "The ACM certificate of the clients' host name (issued: a listener refuses a pending one)."
  type        = string
}
variable "ssl_policy" {
  description = "The HTTPS listeners' security policy: TLS 1.3 and 1.2 only."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}
variable "access_logs" {
  description = "Where the ALB writes its access logs (the account's log bucket, with its ELB delivery policy, and a prefix); null: none."
  type = object({
    bucket = string
    prefix = string
  })
  default = null
}
variable "web_acl_arn" {
  description = "The account's WAF web ACL (regional) to associate with the ALB; null: none."
  type        = string
  default     = null
}
variable "security_group_id" {
  description = "The ALB's security group."
  type        = string
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:access logs go to the account's log bucket (it and its ELB delivery policy belong to the account, like the flow logs' destination) when the variable access_logs names it
  #checkov:skip=CKV2_AWS_28:the web ACL is the account's (its managed rules tuned to the account's traffic, often by Firewall Manager) and is associated when web_acl_arn names it
  #checkov:skip=CKV2_AWS_76:the rule groups (AWS's known-bad-inputs group for Log4j among them) are the account's web ACL's, named by web_acl_arn, not this module's
  name                       = "${var.name}-alb"
  internal                   = false # internet-facing: the rules treat its world-open ports as public
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [var.security_group_id]
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection
  dynamic "access_logs" {
    for_each = var.access_logs == null ? [] : [var.access_logs]
    content {
      enabled = true
      bucket  = access_logs.value.bucket
      prefix  = access_logs.value.prefix
    }
  }
}

resource "aws_wafv2_web_acl_association" "this" {
  count        = var.web_acl_arn == null ? 0 : 1
  resource_arn = aws_lb.this.arn
  web_acl_arn  = var.web_acl_arn
}

# The production listener (HTTPS, 443) and, for blue/green, the test listener (HTTPS on
# blue_green.test_port, reachable from inside the VPC only): CodeDeploy points the services' rules
# on it at the new tasks first, so they take test traffic before any production request reaches
# them. Both present the certificate and accept TLS 1.2 and 1.3 only.
resource "aws_lb_listener" "this" {
  for_each          = merge({ https = 443 }, var.test_port == null ? {} : { test = var.test_port })
  load_balancer_arn = aws_lb.this.arn
  port              = each.value
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn
  default_action {
    type = "fixed-response"
    fixed_response {
      content_type = "application/json"
      message_body = "{\"error\": \"no route\"}"
      status_code  = "404"
    }
  }
}

# Port 80 answers every request with a permanent redirect to the same URL over HTTPS, and nothing
# else: no rule is ever attached to it (rule public-listeners-serve-https).
resource "aws_lb_listener" "redirect" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"
  default_action {
    type = "redirect"
    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }
}

moved {
  from = aws_lb_listener.this["http"]
  to   = aws_lb_listener.redirect
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
  value = aws_lb_listener.this["https"].arn
}
output "test_listener_arn" {
  value = try(aws_lb_listener.this["test"].arn, null)
}
