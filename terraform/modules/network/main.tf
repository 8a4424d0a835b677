# A VPC with two public subnets (the ALB) and two private subnets (the tasks), and the two
# security groups: the ALB's (HTTP from anywhere) and the tasks' (only from the ALB).
variable "name" {
  description = "Name prefix."
  type        = string
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

resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id # no rules: the default group admits nothing
}

resource "aws_security_group" "alb" {
  #checkov:skip=CKV_AWS_260:the ALB is the public entry point; port 80 until the HTTPS listener exists (see the alb module)
  #checkov:skip=CKV2_AWS_5:attached in the alb module (checkov does not follow module outputs)
  name        = "${var.name}-alb"
  description = "ALB: HTTP from the clients"
  vpc_id      = aws_vpc.this.id
  ingress {
    description = "HTTP"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
  egress {
    description = "to the tasks"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = [var.cidr]
  }
}

resource "aws_security_group" "tasks" {
  #checkov:skip=CKV2_AWS_5:attached to the ECS services in the ecs_service module (checkov does not follow module outputs)
  name        = "${var.name}-tasks"
  description = "Tasks: only the ALB reaches them"
  vpc_id      = aws_vpc.this.id
  dynamic "ingress" {
    for_each = var.task_ports
    content {
      description     = "from the ALB"
      from_port       = ingress.value
      to_port         = ingress.value
      protocol        = "tcp"
      security_groups = [aws_security_group.alb.id]
    }
  }
  egress {
    description = "to Postgres, the image registry and AWS APIs"
    from_port   = 0
    to_port     = 65535
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
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
