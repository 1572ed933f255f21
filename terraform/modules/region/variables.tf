variable "name" {
  description = "Deployment name (resource name prefix)."
  type        = string
}

variable "region_name" {
  description = "The Skein region this module deploys (a key of the topology's regions)."
  type        = string
}

variable "topology" {
  description = "This region's entry of the topology module's `regions` output."
  type = object({
    cidr     = string
    subnets  = list(string)
    edges    = object({ min = number, desired = number, max = number })
    edge_asg = string
  })
}

variable "origins" {
  description = "This region's entries of the topology module's `origins` output."
  type = list(object({
    name       = string
    private_ip = string
    user_data  = string
  }))
}

variable "edge_user_data" {
  description = "This region's edge user-data (topology output `edge_user_data`)."
  type        = string
}

variable "cluster_cidrs" {
  description = "Every region's network (topology output `cluster_cidrs`): the only sources of internal QUIC and admin traffic."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "Networks allowed to scrape /metrics and call the admin API on the admin port."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.monitoring_cidrs : can(cidrhost(c, 0)) && c != "0.0.0.0/0"])
    error_message = "monitoring_cidrs must be CIDR networks, and not 0.0.0.0/0 (metrics and the admin API stay private)."
  }
}

variable "lifecycle_hook_name" {
  description = "Scale-in lifecycle hook name (topology output `lifecycle_hook_name`)."
  type        = string
}

variable "instance_profile" {
  description = "IAM instance profiles: `origin` (reads and writes the join secret) and `edge` (reads it, completes lifecycle actions)."
  type        = object({ origin = string, edge = string })
}

variable "instance_types" {
  description = "EC2 instance types of the origins and the edges."
  type        = object({ origin = string, edge = string })
  default     = { origin = "c7i.xlarge", edge = "c7i.large" }
}

variable "ami_id" {
  description = "Image of every instance. Empty: the newest official Debian 12 amd64 image."
  type        = string
  default     = ""
}

variable "ports" {
  description = "The topology's ports."
  type = object({
    rtmp     = number
    http     = number
    admin    = number
    internal = number
  })
}
