# Private connectivity between two regions' networks (cross-region VPC peering): the
# cluster's QUIC traffic and GeoDNS's reads of the cluster and health checks stay off the
# Internet.
terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source                = "hashicorp/aws"
      version               = ">= 5.40, < 6.0"
      configuration_aliases = [aws.requester, aws.accepter]
    }
  }
}

variable "name" {
  description = "Name tag of the peering connection."
  type        = string
}

variable "requester" {
  description = "The requesting side: its VPC, route table and CIDR."
  type        = object({ vpc_id = string, route_table_id = string, cidr = string })
}

variable "accepter" {
  description = "The accepting side: its VPC, route table, CIDR and cloud region."
  type        = object({ vpc_id = string, route_table_id = string, cidr = string, cloud_region = string })
}

resource "aws_vpc_peering_connection" "this" {
  provider    = aws.requester
  vpc_id      = var.requester.vpc_id
  peer_vpc_id = var.accepter.vpc_id
  peer_region = var.accepter.cloud_region
  tags        = { Name = var.name }
}

resource "aws_vpc_peering_connection_accepter" "this" {
  provider                  = aws.accepter
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
  auto_accept               = true
  tags                      = { Name = var.name }
}

resource "aws_route" "to_accepter" {
  provider                  = aws.requester
  route_table_id            = var.requester.route_table_id
  destination_cidr_block    = var.accepter.cidr
  vpc_peering_connection_id = aws_vpc_peering_connection.this.id
}

resource "aws_route" "to_requester" {
  provider                  = aws.accepter
  route_table_id            = var.accepter.route_table_id
  destination_cidr_block    = var.requester.cidr
  vpc_peering_connection_id = aws_vpc_peering_connection_accepter.this.id
}
