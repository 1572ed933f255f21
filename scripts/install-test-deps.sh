#!/usr/bin/env bash
# Installs the real peers the test suite talks to (Debian packages), only when missing.
set -euo pipefail

# command-to-check  debian-package
needed=(
  "ffmpeg ffmpeg"
  "ffprobe ffmpeg"
  "dig bind9-dnsutils"
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
