terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

# One provider per region: the region modules and the DNS servers each run under their own.
# The default provider (the bootstrap region) holds the global parts: IAM, the join secret and
# the Route 53 delegation.
provider "aws" {
  region = local.regions.eu.cloud_region
  default_tags {
    tags = { "skein:deployment" = var.name }
  }
}

provider "aws" {
  alias  = "eu"
  region = local.regions.eu.cloud_region
  default_tags {
    tags = { "skein:deployment" = var.name }
  }
}

provider "aws" {
  alias  = "us"
  region = local.regions.us.cloud_region
  default_tags {
    tags = { "skein:deployment" = var.name }
  }
}

provider "aws" {
  alias  = "ap"
  region = local.regions.ap.cloud_region
  default_tags {
    tags = { "skein:deployment" = var.name }
  }
}
