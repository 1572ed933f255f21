# The region's network: a VPC with two public subnets in two availability zones. Instances
# have public addresses for their own outbound traffic (release download, secret store, OS
# packages); inbound, only the load balancer's ports are open to the Internet.

data "aws_availability_zones" "available" {
  # checkov:skip=CKV_AWS_394: only the first two zone names are used; zones AWS adds later get later letters and leave them as they are.
  state = "available"
}

resource "aws_vpc" "this" {
  # checkov:skip=CKV2_AWS_11: VPC flow logs cost per GB of media; enable them per incident rather than for every stream byte.
  cidr_block           = var.topology.cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "${var.name}-${var.region_name}" }
}

# Nothing may use the default security group.
resource "aws_default_security_group" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-${var.region_name}-default-closed" }
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = { Name = "${var.name}-${var.region_name}" }
}

resource "aws_subnet" "public" {
  count             = 2
  vpc_id            = aws_vpc.this.id
  cidr_block        = var.topology.subnets[count.index]
  availability_zone = data.aws_availability_zones.available.names[count.index]
  # checkov:skip=CKV_AWS_130: edges and origins need public addresses for outbound traffic (no NAT gateway, to keep the cost down); inbound is limited by security groups.
  map_public_ip_on_launch = true
  tags                    = { Name = "${var.name}-${var.region_name}-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = { Name = "${var.name}-${var.region_name}" }
  # Routes to the other regions (peering) are added by the peering module.
  lifecycle {
    ignore_changes = [route]
  }
}

resource "aws_route_table_association" "public" {
  count          = 2
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}
