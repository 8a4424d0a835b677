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
variable "security_group_id" {
  description = "The ALB's security group."
  type        = string
}

resource "aws_lb" "this" {
  name                       = "${var.name}-alb"
  load_balancer_type         = "application"
  subnets                    = var.subnet_ids
  security_groups            = [var.security_group_id]
  drop_invalid_header_fields = true
}

resource "aws_lb_listener" "http" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
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
  value = aws_lb_listener.http.arn
}
