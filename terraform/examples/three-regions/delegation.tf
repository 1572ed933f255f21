# The delegation in the parent zone, when it is in Route 53: NS records for the zone and the
# glue for name servers inside it. Otherwise the `delegation` output says what to add where.
resource "aws_route53_record" "ns" {
  count   = var.parent_zone_id == "" ? 0 : 1
  zone_id = var.parent_zone_id
  name    = var.zone
  type    = "NS"
  ttl     = 86400
  records = [for ns in module.topology.delegation.ns : "${ns}."]
}

resource "aws_route53_record" "glue" {
  # checkov:skip=CKV2_AWS_23: the glue points at the DNS servers' static addresses, allocated by the dns module.
  for_each = var.parent_zone_id == "" ? {} : module.topology.delegation.glue
  zone_id  = var.parent_zone_id
  name     = each.key
  type     = "A"
  ttl      = 86400
  records  = [each.value]
}
