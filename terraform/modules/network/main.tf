# A VPC with two public subnets (the ALB) and two private subnets (the tasks and the database),
# the private subnets' way out (VPC endpoints for the AWS services the tasks use, or NAT), and the
# security groups: the ALB's (HTTPS, and HTTP that redirects to it, from anywhere), the tasks' (from the ALB; MLflow's port from
# the tasks), the database's (its port from the tasks only) and the endpoints' (HTTPS from the tasks).
variable "name" {
  description = "Name prefix."
  type        = string
}
variable "test_port" {
  description = "The ALB's blue/green test listener port (open to the VPC only); null for none."
  type        = number
  default     = null
}
variable "cidr" {
  description = "VPC CIDR."
  type        = string
}
variable "task_ports" {
  description = "Container ports the ALB may reach on the tasks."
  type        = list(number)
}

variable "availability_zones" {
  description = "Two availability zones."
  type        = list(string)
}
variable "region" {
  description = "Region of the VPC endpoints' service names."
  type        = string
}
variable "egress" {
  description = "How private tasks reach AWS: endpoints (ECR, S3, Logs, Secrets Manager), nat (one gateway), nat_per_az."
  type        = string
}
variable "internal_ports" {
  description = "Ports a task may call on other tasks inside the VPC (MLflow's, for the api)."
  type        = list(number)
}
variable "alb_https_egress" {
  description = "The ALB may call HTTPS anywhere: the identity provider's token and user-info endpoints when it signs users in."
  type        = bool
  default     = false
}
variable "database_port" {
  description = "The database's port (tasks may reach it, nothing else)."
  type        = number
}

locals {
  nat_count = var.egress == "nat_per_az" ? 2 : var.egress == "nat" ? 1 : 0
  # what Fargate and the services call: image pulls (ECR API, registry, S3 for layers), logs, secrets
  interface_endpoints = var.egress == "endpoints" ? ["ecr.api", "ecr.dkr", "logs", "secretsmanager"] : []
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:flow logs go to the account's central log destination, which this module does not own
  cidr_block           = var.cidr
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
}

resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.cidr, 8, count.index)
  availability_zone = var.availability_zones[count.index]
  tags              = { Name = "${var.name}-public-${count.index}" }
}

resource "aws_subnet" "private" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = cidrsubnet(var.cidr, 8, count.index + 10)
  availability_zone = var.availability_zones[count.index]
  tags              = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

# private subnets: a route table each, with the NAT gateway (its own AZ's when there are two)
resource "aws_route_table" "private" {
  count  = 2
  vpc_id = aws_vpc.this.id
  dynamic "route" {
    for_each = local.nat_count > 0 ? [1] : []
    content {
      cidr_block     = "0.0.0.0/0"
      nat_gateway_id = aws_nat_gateway.this[min(count.index, local.nat_count - 1)].id
    }
  }
  tags = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table_association" "private" {
  count          = 2
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

resource "aws_eip" "nat" {
  count  = local.nat_count
  domain = "vpc"
  tags   = { Name = "${var.name}-nat-${count.index}" }
}

resource "aws_nat_gateway" "this" {
  count         = local.nat_count
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  tags          = { Name = "${var.name}-nat-${count.index}" }
}

resource "aws_vpc_endpoint" "interface" {
  for_each            = toset(local.interface_endpoints)
  vpc_id              = aws_vpc.this.id
  service_name        = "com.amazonaws.${var.region}.${each.value}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = aws_subnet.private[*].id
  security_group_ids  = [aws_security_group.endpoints.id]
  private_dns_enabled = true
  tags                = { Name = "${var.name}-${each.value}" }
}

resource "aws_vpc_endpoint" "s3" {
  count             = var.egress == "endpoints" ? 1 : 0
  vpc_id            = aws_vpc.this.id
  service_name      = "com.amazonaws.${var.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id
  tags              = { Name = "${var.name}-s3" }
}

resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id # no rules: the default group admits nothing
}

resource "aws_security_group" "alb" {
  #checkov:skip=CKV_AWS_260:port 80 from anywhere is the HTTP listener that only redirects to HTTPS (the alb module): clients that type the bare name are sent to 443 instead of timing out
  #checkov:skip=CKV2_AWS_5:attached in the alb module (checkov does not follow module outputs)
  name        = "${var.name}-alb"
  description = "ALB: HTTPS from the clients, and HTTP that only redirects to it"
  vpc_id      = aws_vpc.this.id
  dynamic "ingress" {
    for_each = { HTTPS = 443, "HTTP (redirected to HTTPS)" = 80 }
    content {
      description = ingress.key
      from_port   = ingress.value
      to_port     = ingress.value
      protocol    = "tcp"
      cidr_blocks = ["0.0.0.0/0"]
    }
  }
  dynamic "ingress" {
    for_each = var.test_port == null ? [] : [var.test_port]
    content {
      description = "blue/green test listener: from inside the VPC only"
      from_port   = ingress.value
      to_port     = ingress.value
      protocol    = "tcp"
      cidr_blocks = [var.cidr]
    }
  }
  egress {
    description = "to the tasks"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = [var.cidr]
  }
  dynamic "egress" {
    for_each = var.alb_https_egress ? [1] : []
    content {
      description = "to the identity provider (sign-in: token and user-info endpoints)"
      from_port   = 443
      to_port     = 443
      protocol    = "tcp"
      cidr_blocks = ["0.0.0.0/0"]
    }
  }
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached to the ECS services in the ecs_service module (checkov does not follow module outputs)
  name        = "${var.name}-tasks"
  description = "Tasks: the ALB reaches them; the api reaches MLflow"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${var.name}-tasks" }
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  for_each                     = toset([for p in var.task_ports : tostring(p)])
  security_group_id            = aws_security_group.tasks.id
  description                  = "from the ALB"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "tasks_internal" {
  for_each                     = toset([for p in var.internal_ports : tostring(p)])
  security_group_id            = aws_security_group.tasks.id
  description                  = "task to task (the api to MLflow)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_internal" {
  for_each                     = toset([for p in var.internal_ports : tostring(p)])
  security_group_id            = aws_security_group.tasks.id
  description                  = "task to task (the api to MLflow)"
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  referenced_security_group_id = aws_security_group.tasks.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_database" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "to the database"
  ip_protocol                  = "tcp"
  from_port                    = var.database_port
  to_port                      = var.database_port
  referenced_security_group_id = aws_security_group.database.id
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  #checkov:skip=CKV_AWS_382:HTTPS to AWS APIs (ECR, S3, Logs, Secrets Manager) through the endpoints or the NAT gateway; their addresses are not fixed
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS to AWS APIs (through the endpoints, or the NAT gateway)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_security_group" "database" {
  #checkov:skip=CKV2_AWS_5:attached to the database in the database module (checkov does not follow module outputs)
  name        = "${var.name}-database"
  description = "Database: its port from the tasks only"
  vpc_id      = aws_vpc.this.id
  ingress {
    description     = "from the tasks"
    from_port       = var.database_port
    to_port         = var.database_port
    protocol        = "tcp"
    security_groups = [aws_security_group.tasks.id]
  }
  tags = { Name = "${var.name}-database" }
}

resource "aws_security_group" "endpoints" {
  #checkov:skip=CKV2_AWS_5:attached to the interface endpoints above when egress is endpoints
  name        = "${var.name}-endpoints"
  description = "VPC endpoints: HTTPS from the tasks"
  vpc_id      = aws_vpc.this.id
  ingress {
    description     = "HTTPS from the tasks"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.tasks.id]
  }
  tags = { Name = "${var.name}-endpoints" }
}

output "vpc_id" {
  value = aws_vpc.this.id
}
output "public_subnet_ids" {
  value = aws_subnet.public[*].id
}
output "private_subnet_ids" {
  value = aws_subnet.private[*].id
}
output "alb_security_group_id" {
  value = aws_security_group.alb.id
}
output "task_security_group_id" {
  value = aws_security_group.tasks.id
}
output "database_security_group_id" {
  value = aws_security_group.database.id
}
