output "service_name" {
  description = "Publish to rtmp://NAME/APP/KEY?token=..., play rtmp://NAME/APP/KEY or http://NAME/APP/KEY.flv."
  value       = module.topology.service_name
}

output "vips" {
  description = "Each region's static load balancer addresses (what GeoDNS answers)."
  value       = { eu = module.region_eu.vips, us = module.region_us.vips, ap = module.region_ap.vips }
}

output "delegation" {
  description = "NS names and glue addresses for the parent zone (written to Route 53 when parent_zone_id is set)."
  value       = module.topology.delegation
}

output "dashboard_url" {
  description = "The dashboard of the bootstrap region (every node serves it on its HTTP port)."
  value       = "http://${module.region_eu.vips[0]}/dashboard/"
}

output "join_secret_arn" {
  description = "The secret the origins keep the join document in (read it to join a node by hand)."
  value       = aws_secretsmanager_secret.join.arn
}

output "check" {
  description = "Commands to check the deployment once it is up."
  value       = <<-EOT
    dig @${module.dns.public_ips["ns1"]} ${module.topology.service_name} A +norecurse
    dig @${module.dns.public_ips["ns2"]} ${module.topology.service_name} A +norecurse +subnet=203.0.113.0/24
    dig ${module.topology.service_name} A +trace
    curl -s http://${module.region_eu.vips[0]}/api/v1/cluster | jq '.nodes[] | {name, region, roles, health}'
  EOT
}
