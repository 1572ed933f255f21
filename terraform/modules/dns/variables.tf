variable "name" {
  description = "Deployment name (resource name prefix)."
  type        = string
}

variable "first" {
  description = "The first region's DNS servers by name and where they go: the region's VPC and first subnet."
  type = object({
    region    = string
    vpc_id    = string
    subnet_id = string
    names     = list(string)
  })
  validation {
    condition     = length(var.first.names) >= 1
    error_message = "first.names must name at least one DNS server."
  }
}

variable "second" {
  description = "A second region's DNS servers, as `first`: a zone's name servers must not share one region's fate."
  type = object({
    region    = string
    vpc_id    = string
    subnet_id = string
    names     = list(string)
  })
  validation {
    condition     = length(var.second.names) >= 1
    error_message = "second.names must name at least one DNS server."
  }
}

variable "servers" {
  description = "Every DNS server's fixed private address and user-data by name (from the topology module's dns_servers output). Kept apart from `first`/`second` so that the static addresses do not wait for the user-data that names them."
  type        = map(object({ private_ip = string, user_data = string }))
}

variable "monitoring_cidrs" {
  description = "Networks allowed to scrape skein-dns's /metrics."
  type        = list(string)
  default     = []
}

variable "metrics_port" {
  description = "skein-dns's metrics port (topology ports.dns_metrics)."
  type        = number
  default     = 9153
}

variable "instance_profile" {
  description = "IAM instance profile of the DNS servers (none of the cluster's secrets; SSM access for operators)."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type of the DNS servers."
  type        = string
  default     = "c7i.large"
}

variable "ami_ids" {
  description = "Image per side ({ first, second }). Empty: the newest official Debian 12 amd64 image of that region."
  type        = object({ first = optional(string, ""), second = optional(string, "") })
  default     = {}
}
