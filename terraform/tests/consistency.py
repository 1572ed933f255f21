#!/usr/bin/env python3
"""Checks that the Terraform code agrees with the rest of the repository, from the parsed HCL
(python-hcl2, which checkov brings):

- the three-region example's region table uses coordinates listed in geo-data/regions.toml
  (the same table GeoDNS configurations are written from);
- every region of the table has a region module, VIPs passed to the topology and its edge
  user-data, and every DNS server names a region of the table;
- no secret is a literal anywhere under terraform/ (join tokens, private keys, access keys,
  passwords);
- every checkov skip carries a reason.

Exits 1 with one line per problem."""

import pathlib
import re
import sys
import tomllib

import hcl2

ROOT = pathlib.Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
EXAMPLE = TERRAFORM / "examples" / "three-regions"

problems = []


def load(path):
    with open(path) as f:
        return hcl2.load(f)


def unwrap(value):
    # python-hcl2 wraps some values in one-element lists.
    while isinstance(value, list) and len(value) == 1 and isinstance(value[0], (dict, list)):
        value = value[0]
    return value


def number(value):
    # ... and writes negative numbers as interpolations: "${-77.45}".
    return float(str(value).removeprefix("${").removesuffix("}"))


def region_table():
    main = load(EXAMPLE / "main.tf")
    for block in main.get("locals", []):
        if "regions" in block:
            return unwrap(block["regions"]), unwrap(block.get("dns_servers", []))
    problems.append("examples/three-regions/main.tf: no locals.regions table")
    return {}, []


def check_coordinates(regions):
    known = tomllib.loads((ROOT / "geo-data" / "regions.toml").read_text())["regions"]
    pairs = {(round(r["lat"], 2), round(r["lon"], 2)) for r in known}
    for name, region in regions.items():
        lat, lon = number(region["lat"]), number(region["lon"])
        if (round(lat, 2), round(lon, 2)) not in pairs:
            problems.append(f"region {name}: [{lat}, {lon}] is not a location of geo-data/regions.toml")


def check_wiring(regions, dns_servers):
    text = (EXAMPLE / "main.tf").read_text()
    for name in regions:
        if f'module "region_{name}"' not in text:
            problems.append(f"region {name}: no module region_{name}")
        if not re.search(rf"\b{name}\s*=\s*module\.region_{name}\.vips", text):
            problems.append(f"region {name}: its VIPs are not passed to the topology (region_vips)")
        if f'edge_user_data["{name}"]' not in text:
            problems.append(f"region {name}: its module does not get the region's edge user-data")
    for server in dns_servers:
        if server["region"] not in regions:
            problems.append(f"dns server {server['name']}: region {server['region']} is not in the table")


SECRET_PATTERNS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bv1\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a stream token"),
    (re.compile(r"\b[0-9a-f]{16}\.[0-9a-f]{32,}\b"), "a join token"),
    (re.compile(r"(?i)\b(password|secret_string|admin_token|token)\s*=\s*\"[^\"$]+\""), "a secret value"),
]


def check_no_secret_literals():
    for path in sorted(TERRAFORM.rglob("*")):
        if path.suffix not in (".tf", ".tftpl", ".hcl", ".example", ".json") or ".terraform" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern, what in SECRET_PATTERNS:
                if pattern.search(line):
                    problems.append(f"{path.relative_to(ROOT)}:{number}: looks like {what}")


def check_skips_are_justified():
    for path in sorted(TERRAFORM.rglob("*.tf")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = re.search(r"checkov:skip=([A-Z0-9_]+)(.*)", line)
            if m and len(m.group(2).strip(" :")) < 20:
                problems.append(f"{path.relative_to(ROOT)}:{number}: skip of {m.group(1)} without a reason")


regions, dns_servers = region_table()
check_coordinates(regions)
check_wiring(regions, dns_servers)
check_no_secret_literals()
check_skips_are_justified()
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print(f"terraform consistency: {len(regions)} regions, {len(dns_servers)} DNS servers, no secret literals")
