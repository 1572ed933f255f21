# The deployment's topology, computed from the region table: which instances exist, their
# roles and fixed addresses, the cluster's seeds, every instance's rendered user-data, the
# skein-dns configuration and the DNS records of the delegation. The cloud modules only turn
# these values into resources.

locals {
  region_names     = sort(keys(var.regions))
  bootstrap_region = var.bootstrap_region != "" ? var.bootstrap_region : local.region_names[0]
  origin_target    = var.origin_target > 0 ? var.origin_target : sum([for r in var.regions : r.origins])
  fqdn_service     = var.service == "@" ? var.zone : "${var.service}.${var.zone}"

  # Two subnets per region (one per availability zone), /20 each; fixed addresses live in the
  # first: origins from .10, DNS servers from .53.
  subnets = { for name, r in var.regions : name => [cidrsubnet(r.cidr, 4, 0), cidrsubnet(r.cidr, 4, 1)] }

  origins = flatten([
    for name in local.region_names : [
      for i in range(var.regions[name].origins) : {
        name       = "${name}-origin-${i + 1}"
        region     = name
        private_ip = cidrhost(local.subnets[name][0], 10 + i)
        bootstrap  = name == local.bootstrap_region && i == 0
      }
    ]
  ])

  # Every origin is a seed: a joining node tries them in order, the bootstrap origin first.
  seeds = concat(
    [for o in local.origins : "${o.private_ip}:${var.ports.internal}" if o.bootstrap],
    [for o in local.origins : "${o.private_ip}:${var.ports.internal}" if !o.bootstrap],
  )
  api_seeds = [for o in local.origins : "${o.private_ip}:${var.ports.http}"]

  dns_servers = [
    for i, s in var.dns_servers : {
      name   = s.name
      fqdn   = "${s.name}.${var.zone}"
      region = s.region
      # null for an unknown region: the dns_servers output's precondition then says so.
      private_ip = contains(local.region_names, s.region) ? cidrhost(local.subnets[s.region][0], 53 + length([for p in slice(var.dns_servers, 0, i) : p if p.region == s.region])) : null
    }
  ]
  dns_public_ips = { for s in local.dns_servers : s.name => lookup(var.dns_public_ips, s.name, s.private_ip) }

  install_release = templatefile("${path.module}/templates/install-release.sh.tftpl", { release = var.release })

  node_common = {
    ports          = var.ports
    install        = local.install_release
    lifecycle_hook = local.lifecycle_hook
    join_secret    = var.join_secret
    seeds          = join(",", local.seeds)
  }

  node_config = {
    for name, r in var.regions : name => {
      region        = name
      lat           = r.lat
      lon           = r.lon
      vips          = lookup(var.region_vips, name, [])
      origin_target = local.origin_target
    }
  }

  origin_user_data = {
    for o in local.origins : o.name => templatefile("${path.module}/templates/node-user-data.sh.tftpl", merge(local.node_common, {
      role        = "origin"
      mode        = o.bootstrap ? "init" : "join"
      node_name   = o.name
      region_name = o.region
      asg_name    = ""
      skein_toml  = templatefile("${path.module}/templates/skein.toml.tftpl", merge(local.node_config[o.region], { ports = var.ports, roles = "origin" }))
    }))
  }

  edge_asg_names = { for name in local.region_names : name => "${var.name}-${name}-edges" }
  lifecycle_hook = "${var.name}-drain"

  edge_user_data = {
    for name in local.region_names : name => templatefile("${path.module}/templates/node-user-data.sh.tftpl", merge(local.node_common, {
      role        = "edge"
      mode        = "join"
      node_name   = ""
      region_name = name
      asg_name    = local.edge_asg_names[name]
      skein_toml  = templatefile("${path.module}/templates/skein.toml.tftpl", merge(local.node_config[name], { ports = var.ports, roles = "edge" }))
    }))
  }

  skein_dns_toml = templatefile("${path.module}/templates/skein-dns.toml.tftpl", {
    zone           = var.zone
    service        = var.service
    soa_serial     = var.soa_serial
    name_servers   = [for s in local.dns_servers : { fqdn = s.fqdn, ip = local.dns_public_ips[s.name] }]
    default_region = local.bootstrap_region
    client_subnets = merge([for name, r in var.regions : { for s in r.client_subnets : s => name }]...)
    api_seeds      = local.api_seeds
    geo_database   = var.geo_database
    metrics_port   = var.ports.dns_metrics
  })

  dns_user_data = {
    for s in local.dns_servers : s.name => templatefile("${path.module}/templates/dns-user-data.sh.tftpl", {
      install        = local.install_release
      skein_dns_toml = local.skein_dns_toml
    })
  }
}
