variable "name" {
  description = "Deployment name: prefix of every resource and instance name."
  type        = string
  default     = "skein"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must be 1-20 characters of a-z, 0-9 and '-', starting with a letter."
  }
}

variable "zone" {
  description = "The DNS zone skein-dns is authoritative for (delegated to it with NS records), e.g. \"live.example.com\" or \"example.com\"."
  type        = string
  validation {
    condition     = can(regex("^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\\.)+[a-z]{2,63}$", var.zone))
    error_message = "zone must be a lower-case DNS name without a trailing dot, e.g. live.example.com."
  }
}

variable "service" {
  description = "The service name inside the zone that skein-dns answers with edges (\"@\" for the zone apex)."
  type        = string
  default     = "@"
  validation {
    condition     = var.service == "@" || can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.service))
    error_message = "service must be \"@\" or one DNS label, e.g. \"live\"."
  }
}

variable "regions" {
  description = <<-EOT
    The deployment's regions, keyed by Skein region name (what GeoDNS and `skein status` show):
      cloud_region    the cloud region, e.g. "eu-central-1"
      lat, lon        the region's location in degrees (geo-data/regions.toml has common ones)
      cidr            the region's private network, a /16 distinct from the other regions'
      origins         origin instances (1-5), with fixed private addresses
      edges           edge fleet size: min, desired, max
      client_subnets  client networks always answered with this region (GeoDNS overrides)
  EOT
  type = map(object({
    cloud_region   = string
    lat            = number
    lon            = number
    cidr           = string
    origins        = number
    edges          = object({ min = number, desired = number, max = number })
    client_subnets = optional(list(string), [])
  }))
  validation {
    condition     = length(var.regions) >= 1 && length(var.regions) <= 16
    error_message = "regions must name 1 to 16 regions."
  }
  validation {
    condition     = alltrue([for k, _ in var.regions : can(regex("^[a-z][a-z0-9-]{0,31}$", k))])
    error_message = "region names must be 1-32 characters of a-z, 0-9 and '-', starting with a letter."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.lat >= -90 && r.lat <= 90 && r.lon >= -180 && r.lon <= 180])
    error_message = "lat must be within [-90, 90] and lon within [-180, 180] degrees."
  }
  validation {
    condition     = alltrue([for r in var.regions : can(cidrhost(r.cidr, 0)) && endswith(r.cidr, "/16") && cidrhost(r.cidr, 0) == split("/", r.cidr)[0]])
    error_message = "each region's cidr must be an IPv4 /16 network address, e.g. 10.11.0.0/16."
  }
  validation {
    condition     = length(distinct([for r in var.regions : r.cidr])) == length(var.regions)
    error_message = "regions must have distinct CIDRs (their networks are peered)."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.origins >= 1 && r.origins <= 5 && floor(r.origins) == r.origins])
    error_message = "origins must be a whole number from 1 to 5 per region."
  }
  validation {
    condition     = alltrue([for r in var.regions : r.edges.min >= 1 && r.edges.min <= r.edges.desired && r.edges.desired <= r.edges.max && r.edges.max <= 100])
    error_message = "edges must satisfy 1 <= min <= desired <= max <= 100."
  }
  validation {
    condition     = alltrue(flatten([for r in var.regions : [for s in r.client_subnets : can(cidrhost(s, 0))]]))
    error_message = "client_subnets must be CIDR networks, e.g. 198.51.100.0/24."
  }
}

variable "bootstrap_region" {
  description = "Region whose first origin creates the cluster (`skein init`). Empty: the first region by name."
  type        = string
  default     = ""
}

variable "region_vips" {
  description = "Static addresses of each region's load balancer (from the region module). GeoDNS hands these out for the region. Empty for a region: its edges' own addresses."
  type        = map(list(string))
  default     = {}
}

variable "dns_servers" {
  description = "The skein-dns servers, at least two, ideally in different regions: name (the NS host name's first label, e.g. \"ns1\") and region."
  type        = list(object({ name = string, region = string }))
  validation {
    condition     = length(var.dns_servers) >= 2
    error_message = "dns_servers must list at least two servers (a zone needs two name servers)."
  }
  validation {
    condition     = length(distinct([for s in var.dns_servers : s.name])) == length(var.dns_servers)
    error_message = "dns_servers names must be distinct."
  }
  validation {
    condition     = alltrue([for s in var.dns_servers : can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", s.name))])
    error_message = "dns_servers names must be single DNS labels, e.g. ns1."
  }
}

variable "dns_public_ips" {
  description = "Public (static) address of each DNS server by name, from the dns module: the glue. Missing: its private address (private deployments and tests)."
  type        = map(string)
  default     = {}
}

variable "release" {
  description = "The Skein release every instance installs: the tarball's URL (https://, or file:// on a machine that has it) and its SHA-256, as printed by scripts/package-release.sh."
  type        = object({ url = string, sha256 = string })
  validation {
    condition     = can(regex("^(https|file)://", var.release.url))
    error_message = "release.url must be an https:// (or file://) URL."
  }
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.release.sha256))
    error_message = "release.sha256 must be 64 lower-case hex digits."
  }
}

variable "join_secret" {
  description = "Where the join document lives: the secret store's id of the secret (an ARN on AWS) and the cloud region it is in. Only its id is rendered into user-data; its value never is."
  type        = object({ id = string, cloud_region = string })
}

variable "origin_target" {
  description = "Origins the cluster keeps (it promotes edges when it has fewer). 0: the number of origin instances."
  type        = number
  default     = 0
  validation {
    condition     = var.origin_target >= 0 && floor(var.origin_target) == var.origin_target
    error_message = "origin_target must be a whole number >= 0."
  }
}

variable "geo_database" {
  description = "Whether the release tarball carries the DB-IP databases (scripts/package-release.sh --geo-dir); without them, clients outside client_subnets get the first region."
  type        = bool
  default     = false
}

variable "soa_serial" {
  description = "SOA serial of the zone; raise it when the zone's static content changes."
  type        = number
  default     = 1
}

variable "ports" {
  description = "Ports of the nodes and DNS servers."
  type = object({
    rtmp        = optional(number, 1935)
    http        = optional(number, 8080)
    admin       = optional(number, 9090)
    internal    = optional(number, 7946)
    dns_metrics = optional(number, 9153)
  })
  default = {}
}
