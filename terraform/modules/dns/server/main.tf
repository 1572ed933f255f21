# skein-dns instances of one region: fixed private addresses, static public addresses, port 53
# open to the Internet, metrics to the monitoring networks only.
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

variable "name" {
  description = "Deployment name (resource name prefix)."
  type        = string
}

variable "vpc_id" {
  description = "The region's VPC."
  type        = string
}

variable "subnet_id" {
  description = "The subnet of the servers' fixed addresses (the region's first)."
  type        = string
}

variable "servers" {
  description = "The DNS servers of this region: name, fixed private address, user-data."
  type        = list(object({ name = string, private_ip = string, user_data = string }))
}

variable "eip_ids" {
  description = "Allocation id of each server's static public address, by name."
  type        = map(string)
}

variable "monitoring_cidrs" {
  description = "Networks allowed to scrape /metrics."
  type        = list(string)
}

variable "metrics_port" {
  description = "skein-dns's metrics port."
  type        = number
}

variable "instance_profile" {
  description = "IAM instance profile of the servers."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type."
  type        = string
}

variable "ami_id" {
  description = "Image; empty: the newest official Debian 12 amd64 image."
  type        = string
}

data "aws_ami" "debian" {
  count       = var.ami_id == "" ? 1 : 0
  most_recent = true
  owners      = ["136693071363"] # Debian's official cloud images
  filter {
    name   = "name"
    values = ["debian-12-amd64-*"]
  }
}

resource "aws_security_group" "dns" {
  name        = "${var.name}-dns-${substr(sha256(join(",", [for s in var.servers : s.name])), 0, 8)}"
  description = "skein-dns: DNS from anywhere, metrics from monitoring"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "dns" {
  for_each          = toset(["udp", "tcp"])
  security_group_id = aws_security_group.dns.id
  description       = "DNS over ${each.value}"
  ip_protocol       = each.value
  from_port         = 53
  to_port           = 53
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "metrics" {
  for_each          = toset(var.monitoring_cidrs)
  security_group_id = aws_security_group.dns.id
  description       = "skein-dns /metrics from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.metrics_port
  to_port           = var.metrics_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.dns.id
  description       = "Outbound: health probes of the edges, the cluster API, the release"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_instance" "dns" {
  for_each                    = { for s in var.servers : s.name => s }
  ami                         = var.ami_id != "" ? var.ami_id : data.aws_ami.debian[0].id
  instance_type               = var.instance_type
  subnet_id                   = var.subnet_id
  private_ip                  = each.value.private_ip
  vpc_security_group_ids      = [aws_security_group.dns.id]
  iam_instance_profile        = var.instance_profile
  user_data                   = each.value.user_data
  user_data_replace_on_change = true
  ebs_optimized               = true
  monitoring                  = true
  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    encrypted   = true
    volume_size = 10
  }
  tags = { Name = "${var.name}-${each.key}", "skein:role" = "dns" }
  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_eip_association" "dns" {
  for_each      = aws_instance.dns
  instance_id   = each.value.id
  allocation_id = var.eip_ids[each.key]
}
