# Skein in three regions: Frankfurt, Virginia, Singapore. One origin and an edge fleet behind
# a static-address load balancer per region, two skein-dns servers (Frankfurt, Virginia), the
# regions' networks peered, and the zone delegated to skein-dns. docs/deploy.md walks through it.

locals {
  # The region table: every other value is computed from it by the topology module.
  regions = {
    eu = { cloud_region = "eu-central-1", lat = 50.11, lon = 8.68, cidr = "10.11.0.0/16", origins = 1, edges = var.edges }
    us = { cloud_region = "us-east-1", lat = 38.95, lon = -77.45, cidr = "10.12.0.0/16", origins = 1, edges = var.edges }
    ap = { cloud_region = "ap-southeast-1", lat = 1.35, lon = 103.82, cidr = "10.13.0.0/16", origins = 1, edges = var.edges }
  }
  dns_servers = [{ name = "ns1", region = "eu" }, { name = "ns2", region = "us" }]
}

module "topology" {
  source           = "../../modules/topology"
  name             = var.name
  zone             = var.zone
  regions          = local.regions
  bootstrap_region = "eu"
  dns_servers      = local.dns_servers
  release          = var.release
  join_secret      = { id = aws_secretsmanager_secret.join.arn, cloud_region = local.regions.eu.cloud_region }
  region_vips      = { eu = module.region_eu.vips, us = module.region_us.vips, ap = module.region_ap.vips }
  dns_public_ips   = module.dns.public_ips
}

module "region_eu" {
  source              = "../../modules/region"
  providers           = { aws = aws.eu }
  name                = var.name
  region_name         = "eu"
  topology            = module.topology.regions["eu"]
  origins             = [for o in module.topology.origins : o if o.region == "eu"]
  edge_user_data      = module.topology.edge_user_data["eu"]
  cluster_cidrs       = module.topology.cluster_cidrs
  monitoring_cidrs    = var.monitoring_cidrs
  lifecycle_hook_name = module.topology.lifecycle_hook_name
  instance_profile    = { origin = aws_iam_instance_profile.origin.name, edge = aws_iam_instance_profile.edge.name }
  ports               = { rtmp = 1935, http = 8080, admin = 9090, internal = 7946 }
}

module "region_us" {
  source              = "../../modules/region"
  providers           = { aws = aws.us }
  name                = var.name
  region_name         = "us"
  topology            = module.topology.regions["us"]
  origins             = [for o in module.topology.origins : o if o.region == "us"]
  edge_user_data      = module.topology.edge_user_data["us"]
  cluster_cidrs       = module.topology.cluster_cidrs
  monitoring_cidrs    = var.monitoring_cidrs
  lifecycle_hook_name = module.topology.lifecycle_hook_name
  instance_profile    = { origin = aws_iam_instance_profile.origin.name, edge = aws_iam_instance_profile.edge.name }
  ports               = { rtmp = 1935, http = 8080, admin = 9090, internal = 7946 }
}

module "region_ap" {
  source              = "../../modules/region"
  providers           = { aws = aws.ap }
  name                = var.name
  region_name         = "ap"
  topology            = module.topology.regions["ap"]
  origins             = [for o in module.topology.origins : o if o.region == "ap"]
  edge_user_data      = module.topology.edge_user_data["ap"]
  cluster_cidrs       = module.topology.cluster_cidrs
  monitoring_cidrs    = var.monitoring_cidrs
  lifecycle_hook_name = module.topology.lifecycle_hook_name
  instance_profile    = { origin = aws_iam_instance_profile.origin.name, edge = aws_iam_instance_profile.edge.name }
  ports               = { rtmp = 1935, http = 8080, admin = 9090, internal = 7946 }
}

module "peering_eu_us" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.eu, aws.accepter = aws.us }
  name      = "${var.name}-eu-us"
  requester = { vpc_id = module.region_eu.vpc_id, route_table_id = module.region_eu.route_table_id, cidr = local.regions.eu.cidr }
  accepter  = { vpc_id = module.region_us.vpc_id, route_table_id = module.region_us.route_table_id, cidr = local.regions.us.cidr, cloud_region = local.regions.us.cloud_region }
}

module "peering_eu_ap" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.eu, aws.accepter = aws.ap }
  name      = "${var.name}-eu-ap"
  requester = { vpc_id = module.region_eu.vpc_id, route_table_id = module.region_eu.route_table_id, cidr = local.regions.eu.cidr }
  accepter  = { vpc_id = module.region_ap.vpc_id, route_table_id = module.region_ap.route_table_id, cidr = local.regions.ap.cidr, cloud_region = local.regions.ap.cloud_region }
}

module "peering_us_ap" {
  source    = "../../modules/peering"
  providers = { aws.requester = aws.us, aws.accepter = aws.ap }
  name      = "${var.name}-us-ap"
  requester = { vpc_id = module.region_us.vpc_id, route_table_id = module.region_us.route_table_id, cidr = local.regions.us.cidr }
  accepter  = { vpc_id = module.region_ap.vpc_id, route_table_id = module.region_ap.route_table_id, cidr = local.regions.ap.cidr, cloud_region = local.regions.ap.cloud_region }
}

module "dns" {
  source    = "../../modules/dns"
  providers = { aws.first = aws.eu, aws.second = aws.us }
  name      = var.name
  first = {
    region    = "eu"
    vpc_id    = module.region_eu.vpc_id
    subnet_id = module.region_eu.subnet_ids[0]
    names     = ["ns1"]
  }
  second = {
    region    = "us"
    vpc_id    = module.region_us.vpc_id
    subnet_id = module.region_us.subnet_ids[0]
    names     = ["ns2"]
  }
  servers          = { for s in module.topology.dns_servers : s.name => { private_ip = s.private_ip, user_data = s.user_data } }
  monitoring_cidrs = var.monitoring_cidrs
  instance_profile = aws_iam_instance_profile.dns.name
}
