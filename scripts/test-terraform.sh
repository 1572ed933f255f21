#!/usr/bin/env bash
# Offline checks of terraform/: formatting, the provider-free topology module's validation and
# tests (variable checks included), validation of the AWS modules and the example when the AWS
# provider can be installed without a network (a plugin mirror or cache; otherwise said and
# skipped), a static IaC scan (checkov) and the repository consistency checks. The end-to-end
# boot test of the rendered user-data is tests/tests/deploy.rs (cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

tf="$(command -v terraform || command -v tofu || true)"
[ -n "$tf" ] || { echo "terraform (or tofu) is missing: run scripts/install-test-deps.sh" >&2; exit 1; }
tools="${SKEIN_TEST_TOOLS:-$HOME/.cache/skein-test-tools}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TF_IN_AUTOMATION=1 TF_INPUT=0

echo "== $(basename "$tf") fmt -check"
"$tf" fmt -check -recursive -diff terraform

echo "== topology module: validate and test (provider-free)"
export TF_DATA_DIR="$work/topology"
"$tf" -chdir=terraform/modules/topology init -backend=false -no-color >/dev/null
"$tf" -chdir=terraform/modules/topology validate -no-color
"$tf" -chdir=terraform/modules/topology test -no-color

# The dns and peering modules take aliased providers: the example validates them.
for dir in terraform/modules/region terraform/examples/three-regions; do
  TF_DATA_DIR="$work/$(basename "$dir")"
  export TF_DATA_DIR
  if "$tf" -chdir="$dir" init -backend=false -no-color -lockfile=readonly >"$work/init.log" 2>&1 ||
    "$tf" -chdir="$dir" init -backend=false -no-color >"$work/init.log" 2>&1; then
    echo "== $dir: validate"
    "$tf" -chdir="$dir" validate -no-color
  else
    echo "== $dir: validate skipped: the hashicorp/aws provider cannot be installed offline here"
    grep -m1 -i "error" "$work/init.log" || true
  fi
done
git checkout -q -- terraform/examples/three-regions/.terraform.lock.hcl 2>/dev/null || true
unset TF_DATA_DIR

echo "== checkov (static IaC scan; every skip is justified where it is)"
"$tools/venv/bin/checkov" --directory terraform --framework terraform --quiet --compact \
  --skip-download --download-external-modules false

echo "== shellcheck: the boot scripts and packaging"
shellcheck node/dist/libexec/* scripts/*.sh

echo "== consistency"
"$tools/venv/bin/python" terraform/tests/consistency.py
