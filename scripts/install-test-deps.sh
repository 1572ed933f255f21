#!/usr/bin/env bash
# Installs the real peers the test suite talks to, only when missing: Debian packages (ffmpeg,
# dig, Chromium, Node.js) and the browser tests' pinned npm packages (tests/browser, from its
# lockfile).
set -euo pipefail

# command-to-check  debian-package
needed=(
  "ffmpeg ffmpeg"
  "ffprobe ffmpeg"
  "dig bind9-dnsutils"
  "chromium chromium"
  "node nodejs"
  "npm npm"
)

missing=()
for entry in "${needed[@]}"; do
  read -r cmd pkg <<<"$entry"
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "installing test dependencies: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
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
