output "public_ips" {
  description = "Public address of every DNS server by name (pass them to the topology's dns_public_ips: the glue)."
  value = merge(
    { for k, e in aws_eip.first : k => e.public_ip },
    { for k, e in aws_eip.second : k => e.public_ip },
  )
}
