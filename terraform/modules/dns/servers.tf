# The skein-dns instances of both regions: one module per side, so each runs under its own
# region's provider.

module "first" {
  source           = "./server"
  providers        = { aws = aws.first }
  name             = var.name
  vpc_id           = var.first.vpc_id
  subnet_id        = var.first.subnet_id
  servers          = [for n in var.first.names : merge(var.servers[n], { name = n })]
  eip_ids          = { for k, e in aws_eip.first : k => e.id }
  monitoring_cidrs = var.monitoring_cidrs
  metrics_port     = var.metrics_port
  instance_profile = var.instance_profile
  instance_type    = var.instance_type
  ami_id           = var.ami_ids.first
}

module "second" {
  source           = "./server"
  providers        = { aws = aws.second }
  name             = var.name
  vpc_id           = var.second.vpc_id
  subnet_id        = var.second.subnet_id
  servers          = [for n in var.second.names : merge(var.servers[n], { name = n })]
  eip_ids          = { for k, e in aws_eip.second : k => e.id }
  monitoring_cidrs = var.monitoring_cidrs
  metrics_port     = var.metrics_port
  instance_profile = var.instance_profile
  instance_type    = var.instance_type
  ami_id           = var.ami_ids.second
}
