output "bootstrap_region" {
  description = "The region whose first origin creates the cluster."
  value       = local.bootstrap_region
}

output "service_name" {
  description = "The name viewers and broadcasters use: skein-dns answers it with the nearest region's edges."
  value       = local.fqdn_service
}

output "regions" {
  description = "Per region: cloud region, CIDR, subnets, coordinates and the edge fleet's size and autoscaling group name."
  value = {
    for name, r in var.regions : name => {
      cloud_region = r.cloud_region
      cidr         = r.cidr
      subnets      = local.subnets[name]
      lat          = r.lat
      lon          = r.lon
      edges        = r.edges
      edge_asg     = local.edge_asg_names[name]
    }
  }
  precondition {
    condition     = contains(keys(var.regions), local.bootstrap_region)
    error_message = "bootstrap_region must be one of the regions."
  }
  precondition {
    condition     = alltrue([for k, _ in var.region_vips : contains(keys(var.regions), k)])
    error_message = "region_vips names a region that is not in regions."
  }
}

output "cluster_cidrs" {
  description = "Every region's private network: the only sources allowed on the internal QUIC port and the admin port."
  value       = [for name in local.region_names : var.regions[name].cidr]
}

output "seeds" {
  description = "Internal addresses (ip:port) of the origins, the bootstrap origin first."
  value       = local.seeds
}

output "origins" {
  description = "Origin instances: name, region, fixed private address, whether it bootstraps the cluster, and its user-data."
  value = [
    for o in local.origins : merge(o, { user_data = local.origin_user_data[o.name] })
  ]
}

output "edge_user_data" {
  description = "User-data of each region's edge launch template (every edge of a region boots the same way)."
  value       = local.edge_user_data
}

output "lifecycle_hook_name" {
  description = "Name of the scale-in lifecycle hook the edge groups must have (skein-lifecycle completes it)."
  value       = local.lifecycle_hook
}

output "dns_servers" {
  description = "skein-dns servers: name, NS host name, region, fixed private address, public address (glue) and user-data."
  value = [
    for s in local.dns_servers : merge(s, {
      public_ip = local.dns_public_ips[s.name]
      user_data = local.dns_user_data[s.name]
    })
  ]
  precondition {
    condition     = alltrue([for s in var.dns_servers : contains(keys(var.regions), s.region)])
    error_message = "every dns_servers entry must name one of the regions."
  }
  precondition {
    condition     = alltrue([for n, _ in var.dns_public_ips : contains([for s in var.dns_servers : s.name], n)])
    error_message = "dns_public_ips names a DNS server that is not in dns_servers."
  }
}

output "skein_dns_config" {
  description = "The skein-dns configuration every DNS server runs."
  value       = local.skein_dns_toml
}

output "delegation" {
  description = "What the parent zone needs: NS records for the zone and glue (A records) for name servers inside it."
  value = {
    zone = var.zone
    ns   = [for s in local.dns_servers : s.fqdn]
    glue = { for s in local.dns_servers : s.fqdn => local.dns_public_ips[s.name] }
  }
}
