variable "name" {
  description = "Deployment name: prefix of every resource."
  type        = string
  default     = "skein"
}

variable "zone" {
  description = "The zone delegated to skein-dns, e.g. \"live.example.com\" (viewers then use that name)."
  type        = string
}

variable "parent_zone_id" {
  description = "Route 53 hosted zone id of the parent zone (e.g. example.com) to write the delegation into. Empty: add the NS records and glue printed in the outputs at your DNS provider or registrar."
  type        = string
  default     = ""
}

variable "release" {
  description = "The Skein release to install: { url, sha256 } as printed by scripts/package-release.sh after you upload the tarball."
  type        = object({ url = string, sha256 = string })
}

variable "monitoring_cidrs" {
  description = "Networks allowed to scrape /metrics and call the admin API (your Prometheus, your operators' VPN)."
  type        = list(string)
  default     = []
}

variable "edges" {
  description = "Edge fleet size of every region: min, desired, max."
  type        = object({ min = number, desired = number, max = number })
  default     = { min = 2, desired = 2, max = 10 }
}
