# Who may reach what. The Internet reaches RTMP and HTTP (through the load balancer, which
# keeps the client's address, so the edges' group must admit it). The internal QUIC port
# (Raft, joins, media relay) and the admin port (admin API, /metrics) admit only the
# cluster's networks, and the admin port also the monitoring networks.

resource "aws_security_group" "node" {
  name        = "${var.name}-${var.region_name}-node"
  description = "Skein nodes: public RTMP/HTTP, cluster-only QUIC, admin for cluster and monitoring"
  vpc_id      = aws_vpc.this.id
  tags        = { Name = "${var.name}-${var.region_name}-node" }
}

resource "aws_vpc_security_group_ingress_rule" "rtmp" {
  security_group_id = aws_security_group.node.id
  description       = "RTMP publish and play"
  ip_protocol       = "tcp"
  from_port         = var.ports.rtmp
  to_port           = var.ports.rtmp
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "http" {
  security_group_id = aws_security_group.node.id
  description       = "HTTP-FLV, HLS, the read-only API and the health endpoint"
  ip_protocol       = "tcp"
  from_port         = var.ports.http
  to_port           = var.ports.http
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_ingress_rule" "internal" {
  for_each          = toset(var.cluster_cidrs)
  security_group_id = aws_security_group.node.id
  description       = "Cluster QUIC (Raft, joins, relay) from ${each.value}"
  ip_protocol       = "udp"
  from_port         = var.ports.internal
  to_port           = var.ports.internal
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "admin" {
  for_each          = toset(concat(var.cluster_cidrs, var.monitoring_cidrs))
  security_group_id = aws_security_group.node.id
  description       = "Admin API and /metrics from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.ports.admin
  to_port           = var.ports.admin
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "node_all" {
  security_group_id = aws_security_group.node.id
  description       = "Outbound: players, the other regions, the release, the secret store"
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
}
