# Static public addresses of the name servers: they are the glue at the registrar, so they are
# allocated apart from the instances and survive an instance's replacement.

resource "aws_eip" "first" {
  # checkov:skip=CKV2_AWS_19: attached to the DNS instance by aws_eip_association in the server module.
  provider = aws.first
  for_each = toset(var.first.names)
  domain   = "vpc"
  tags     = { Name = "${var.name}-${each.key}" }
}

resource "aws_eip" "second" {
  # checkov:skip=CKV2_AWS_19: attached to the DNS instance by aws_eip_association in the server module.
  provider = aws.second
  for_each = toset(var.second.names)
  domain   = "vpc"
  tags     = { Name = "${var.name}-${each.key}" }
}
