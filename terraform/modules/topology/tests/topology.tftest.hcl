# The topology's computed values, and the variable checks that refuse a bad region table.
# Provider-free: `terraform test` runs these offline.

variables {
  zone    = "live.example.test"
  service = "@"
  regions = {
    a = { cloud_region = "eu-central-1", lat = 50.11, lon = 8.68, cidr = "10.61.0.0/16", origins = 2, edges = { min = 2, desired = 2, max = 6 }, client_subnets = ["198.51.100.0/24"] }
    b = { cloud_region = "us-east-1", lat = 38.95, lon = -77.45, cidr = "10.62.0.0/16", origins = 1, edges = { min = 1, desired = 2, max = 6 }, client_subnets = ["203.0.113.0/24"] }
    c = { cloud_region = "ap-southeast-1", lat = 1.35, lon = 103.82, cidr = "10.63.0.0/16", origins = 1, edges = { min = 1, desired = 1, max = 2 } }
  }
  dns_servers    = [{ name = "ns1", region = "a" }, { name = "ns2", region = "b" }, { name = "ns3", region = "a" }]
  release        = { url = "https://releases.example.test/skein-0.1.0-x86_64-linux.tar.gz", sha256 = "18bfd159a00c6158e93a82e6f74745ad1e052706817e28df8714bf66f15857c6" }
  join_secret    = { id = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:skein-join-AbCdEf", cloud_region = "eu-central-1" }
  region_vips    = { a = ["192.0.2.80", "192.0.2.81"] }
  dns_public_ips = { ns1 = "192.0.2.53", ns2 = "198.51.100.53" }
}

run "computes_the_topology" {
  command = plan

  assert {
    condition     = output.bootstrap_region == "a"
    error_message = "the first region by name bootstraps the cluster"
  }
  assert {
    condition     = length(output.origins) == 4 && length([for o in output.origins : o if o.bootstrap]) == 1
    error_message = "one origin instance per configured origin, exactly one of them bootstraps"
  }
  assert {
    condition     = [for o in output.origins : o.private_ip] == ["10.61.0.10", "10.61.0.11", "10.62.0.10", "10.63.0.10"]
    error_message = "origins get fixed addresses from .10 of their region's first subnet"
  }
  assert {
    condition     = output.seeds[0] == "10.61.0.10:7946" && length(output.seeds) == 4
    error_message = "every origin is a seed, the bootstrap origin first"
  }
  assert {
    condition     = [for s in output.dns_servers : s.private_ip] == ["10.61.0.53", "10.62.0.53", "10.61.0.54"]
    error_message = "DNS servers get fixed addresses from .53, counted per region"
  }
  assert {
    condition     = output.delegation.glue == { "ns1.live.example.test" = "192.0.2.53", "ns2.live.example.test" = "198.51.100.53", "ns3.live.example.test" = "10.61.0.54" }
    error_message = "glue uses the public address, or the private one when none is given"
  }
  assert {
    condition     = output.regions["a"].subnets == ["10.61.0.0/20", "10.61.16.0/20"]
    error_message = "two /20 subnets per region"
  }
  assert {
    condition     = output.cluster_cidrs == ["10.61.0.0/16", "10.62.0.0/16", "10.63.0.0/16"]
    error_message = "the cluster CIDRs are the regions' networks"
  }
}

run "renders_user_data_and_dns_config" {
  command = plan

  assert {
    condition     = strcontains(output.origins[0].user_data, "SKEIN_MODE=init") && alltrue([for o in slice(output.origins, 1, 4) : strcontains(o.user_data, "SKEIN_MODE=join")])
    error_message = "the bootstrap origin inits, the other origins join"
  }
  assert {
    condition     = alltrue([for r, u in output.edge_user_data : strcontains(u, "roles = \"edge\"") && strcontains(u, "SKEIN_ASG_NAME=skein-${r}-edges")])
    error_message = "edges join as edges and know their autoscaling group"
  }
  assert {
    condition     = strcontains(output.edge_user_data["a"], "region_vips = [\"192.0.2.80\", \"192.0.2.81\"]") && !strcontains(output.edge_user_data["b"], "region_vips")
    error_message = "a region's VIPs are published by its nodes"
  }
  assert {
    condition     = alltrue([for o in output.origins : strcontains(o.user_data, "18bfd159a00c6158e93a82e6f74745ad1e052706817e28df8714bf66f15857c6")])
    error_message = "every instance checks the pinned release"
  }
  assert {
    condition     = strcontains(output.skein_dns_config, "subnet = { \"198.51.100.0/24\" = \"a\", \"203.0.113.0/24\" = \"b\" }")
    error_message = "client subnets become GeoDNS overrides"
  }
  assert {
    condition     = strcontains(output.skein_dns_config, "seeds = [\"10.61.0.10:8080\", \"10.61.0.11:8080\", \"10.62.0.10:8080\", \"10.63.0.10:8080\"]")
    error_message = "skein-dns reads the cluster from the origins' HTTP API"
  }
  assert {
    condition     = length(distinct([for s in output.dns_servers : s.user_data])) == 1
    error_message = "every DNS server runs the same file (same SOA serial)"
  }
}

run "refuses_a_bad_region_name" {
  command = plan
  variables {
    regions = { "Bad_Name" = { cloud_region = "eu-central-1", lat = 0, lon = 0, cidr = "10.61.0.0/16", origins = 1, edges = { min = 1, desired = 1, max = 1 } } }
  }
  expect_failures = [var.regions]
}

run "refuses_shared_cidrs" {
  command = plan
  variables {
    regions = {
      a = { cloud_region = "eu-central-1", lat = 0, lon = 0, cidr = "10.61.0.0/16", origins = 1, edges = { min = 1, desired = 1, max = 1 } }
      b = { cloud_region = "us-east-1", lat = 0, lon = 0, cidr = "10.61.0.0/16", origins = 1, edges = { min = 1, desired = 1, max = 1 } }
    }
  }
  expect_failures = [var.regions]
}

run "refuses_a_cidr_that_is_not_a_16" {
  command = plan
  variables {
    regions = { a = { cloud_region = "eu-central-1", lat = 0, lon = 0, cidr = "10.61.3.0/24", origins = 1, edges = { min = 1, desired = 1, max = 1 } } }
  }
  expect_failures = [var.regions]
}

run "refuses_edges_min_above_max" {
  command = plan
  variables {
    regions = { a = { cloud_region = "eu-central-1", lat = 0, lon = 0, cidr = "10.61.0.0/16", origins = 1, edges = { min = 3, desired = 2, max = 1 } } }
  }
  expect_failures = [var.regions]
}

run "refuses_coordinates_off_the_globe" {
  command = plan
  variables {
    regions = { a = { cloud_region = "eu-central-1", lat = 91, lon = 0, cidr = "10.61.0.0/16", origins = 1, edges = { min = 1, desired = 1, max = 1 } } }
  }
  expect_failures = [var.regions]
}

run "refuses_a_single_name_server" {
  command = plan
  variables {
    dns_servers = [{ name = "ns1", region = "a" }]
  }
  expect_failures = [var.dns_servers]
}

run "refuses_a_name_server_in_an_unknown_region" {
  command = plan
  variables {
    dns_servers = [{ name = "ns1", region = "a" }, { name = "ns2", region = "z" }]
  }
  expect_failures = [output.dns_servers]
}

run "refuses_an_unpinned_release" {
  command = plan
  variables {
    release = { url = "http://releases.example.test/skein.tar.gz", sha256 = "latest" }
  }
  expect_failures = [var.release]
}

run "refuses_a_bad_zone" {
  command = plan
  variables {
    zone = "Example.COM."
  }
  expect_failures = [var.zone]
}
