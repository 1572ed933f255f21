#!/usr/bin/env bash
# Packs a Skein release tarball: what a deployment's boot script installs into /opt/skein.
#
#   scripts/package-release.sh [--bin-dir DIR] [--geo-dir DIR] [--out DIR]
#
#   --bin-dir DIR  take skein and skein-dns from DIR instead of building them
#                  (default: cargo build --release --bins, then target/release)
#   --geo-dir DIR  also pack the IP geolocation databases (*.mmdb) found in DIR
#                  (e.g. geo-data/ after geo-data/fetch-dbip.sh) into share/geo/
#   --out DIR      where to write the tarball (default: target/dist)
#   --strip        strip debug symbols from the binaries (smaller tarball)
#
# Prints the tarball's path and its SHA-256; pin both in the deployment
# (terraform: release_url and release_sha256).
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=""
geo_dir=""
out_dir="target/dist"
strip_bins=false
while [ $# -gt 0 ]; do
  case "$1" in
  --bin-dir) bin_dir="$2"; shift 2 ;;
  --geo-dir) geo_dir="$2"; shift 2 ;;
  --out) out_dir="$2"; shift 2 ;;
  --strip) strip_bins=true; shift ;;
  -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "$bin_dir" ]; then
  cargo build --release --bins --locked
  bin_dir="target/release"
fi
for bin in skein skein-dns; do
  [ -x "$bin_dir/$bin" ] || { echo "no executable $bin_dir/$bin" >&2; exit 1; }
done

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
name="skein-$version-$(uname -m)-linux"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/$name"
mkdir -p "$root/bin" "$root/libexec" "$root/lib/systemd/system" "$root/share"
install -m 0755 "$bin_dir/skein" "$bin_dir/skein-dns" "$root/bin/"
if $strip_bins; then
  strip --strip-debug "$root/bin/skein" "$root/bin/skein-dns"
fi
install -m 0755 node/dist/libexec/* "$root/libexec/"
install -m 0644 node/dist/systemd/* dns/dist/systemd/* "$root/lib/systemd/system/"
if [ -n "$geo_dir" ]; then
  mkdir -p "$root/share/geo"
  find "$geo_dir" -maxdepth 1 -name '*.mmdb' -exec install -m 0644 {} "$root/share/geo/" \;
fi
echo "$version" >"$root/VERSION"

mkdir -p "$out_dir"
tarball="$out_dir/$name.tar.gz"
# Reproducible: fixed owner, order and times.
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime='@0' -C "$stage" -czf "$tarball" "$name"
sha256="$(sha256sum "$tarball" | cut -d' ' -f1)"
echo "$tarball"
echo "sha256 $sha256"
