output "vips" {
  description = "The region's static VIPs (pass them to the topology's region_vips)."
  value       = aws_eip.vip[*].public_ip
}

output "vpc_id" {
  description = "The region's VPC."
  value       = aws_vpc.this.id
}

output "route_table_id" {
  description = "The route table of the region's subnets (peering routes go here)."
  value       = aws_route_table.public.id
}

output "subnet_ids" {
  description = "The region's two public subnets."
  value       = aws_subnet.public[*].id
}

output "load_balancer_dns_name" {
  description = "The load balancer's own DNS name (for checks; clients use the GeoDNS name)."
  value       = aws_lb.edge.dns_name
}

output "origin_private_ips" {
  description = "Origins by name."
  value       = { for k, o in aws_instance.origin : k => o.private_ip }
}
