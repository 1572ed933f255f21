# The regional VIP: a network load balancer with one static address per availability zone.
# GeoDNS hands these addresses out for the region; the load balancer spreads connections over
# the healthy edges (the same health endpoint GeoDNS probes).

resource "aws_eip" "vip" {
  # checkov:skip=CKV2_AWS_19: these addresses belong to the network load balancer (subnet_mapping below), not to an instance.
  count  = 2
  domain = "vpc"
  tags   = { Name = "${var.name}-${var.region_name}-vip-${count.index}" }
}

resource "aws_lb" "edge" {
  name                             = "${var.name}-${var.region_name}"
  load_balancer_type               = "network"
  internal                         = false
  enable_cross_zone_load_balancing = true
  # checkov:skip=CKV_AWS_91: access logs of a TCP load balancer carry no request detail for RTMP; the nodes log every connection.
  # checkov:skip=CKV_AWS_150: deletion protection would block `terraform destroy`, which docs/deploy.md documents.
  # checkov:skip=CKV2_AWS_20: a network load balancer forwards TCP (RTMP, HTTP-FLV); there is no HTTP listener to redirect.
  # checkov:skip=CKV2_AWS_28: a WAF does not apply to a network load balancer.
  dynamic "subnet_mapping" {
    for_each = aws_subnet.public
    content {
      subnet_id     = subnet_mapping.value.id
      allocation_id = aws_eip.vip[subnet_mapping.key].id
    }
  }
}

locals {
  # What the load balancer forwards: RTMP as it is, and port 80 (HTTP-FLV, HLS) to the nodes'
  # unprivileged HTTP port. Both check the health endpoint GeoDNS probes.
  forwarded = {
    rtmp = { listen = var.ports.rtmp, target = var.ports.rtmp }
    http = { listen = 80, target = var.ports.http }
  }
}

resource "aws_lb_target_group" "edge" {
  for_each             = local.forwarded
  name                 = "${var.name}-${var.region_name}-${each.key}"
  port                 = each.value.target
  protocol             = "TCP"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30
  health_check {
    protocol = "HTTP"
    port     = tostring(var.ports.http)
    path     = "/api/v1/health"
    interval = 10
  }
}

resource "aws_lb_listener" "edge" {
  for_each          = local.forwarded
  load_balancer_arn = aws_lb.edge.arn
  port              = each.value.listen
  protocol          = "TCP"
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.edge[each.key].arn
  }
}
