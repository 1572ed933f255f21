#!/usr/bin/env bash
# GeoDNS benchmark: skein-dns (both UDP engines: "hickory" = hickory-server with our handler,
# "batched" = recvmmsg/sendmmsg with our codec) vs gdnsd (plugin_geoip, same MMDB, same
# answers). Each server pinned to core 0, dnsperf pinned to core 1, ECS queries, loopback only.
# ROUNDS rounds, each running every configuration once (interleaved, so a busy machine hits
# all of them alike); the summary is the median per configuration. Prints qps, server CPU
# µs/query (utime+stime of the server process from /proc/<pid>/stat, all threads) and the
# ratios against gdnsd; then the 2-core runs (2 workers/threads on both cores, dnsperf
# sharing core 1: indicative only) and the failure-detection time.
# Usage: dns/bench/run.sh [SECONDS]      (env: CARGO_TARGET_DIR, CLIENTS, ROUNDS, ECS_OPT)
set -euo pipefail

secs="${1:-20}"
clients="${CLIENTS:-8}"
rounds="${ROUNDS:-3}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"

need=()
command -v dnsperf >/dev/null || need+=(dnsperf)
command -v gdnsd >/dev/null || need+=(gdnsd)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (server on one, dnsperf on the other)" >&2; exit 1; }

(cd "$root" && cargo build --release -q -p skein-dns)
skein="$target/release/skein-dns"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

port_skein=35353; port_gdnsd=35354; metrics=39153
"$skein" gen-demo-mmdb --out "$work/geo.mmdb" >/dev/null

# Fake edges so that skein-dns has healthy edges in every region.
edges_toml=""
c_edges=()
i=0
for r in a:1:50.11:8.68 b:2:38.95:-77.45 c:3:1.35:103.82; do
  IFS=: read -r name oct lat lon <<<"$r"
  for n in 1 2; do
    ip="127.0.$oct.$n"
    python3 "$here/fake_edge.py" "$ip" 41935 48080 & pids+=($!)
    [ "$name" = c ] && c_edges+=($!)
  done
  edges_toml+="
[[regions]]
name = \"$name\"
lat = $lat
lon = $lon
edges = [{ name = \"${name}1\", addrs = [\"127.0.$oct.1\"], rtmp_port = 41935, http_port = 48080 },
         { name = \"${name}2\", addrs = [\"127.0.$oct.2\"], rtmp_port = 41935, http_port = 48080 }]
"
  i=$((i+1))
done

# write_skein_config WORKERS ENGINE
write_skein_config() {
  cat > "$work/skein-dns.toml" <<CFG
[listen]
udp = ["127.0.0.1:$port_skein"]
tcp = ["127.0.0.1:$port_skein"]
metrics = "127.0.0.1:$metrics"
udp_workers = $1
udp_engine = "$2"
[[zones]]
origin = "example.com"
services = ["live"]
soa = { rname = "hostmaster.example.com", minimum = 60 }
ns = [{ name = "ns1.example.com", addrs = ["127.0.0.53"] }]
[geo]
city = "geo.mmdb"
[answer]
k = 2
ttl = 20
[rate_limit]
responses_per_second = 0
$edges_toml
CFG
}

mkdir -p "$work/gdnsd/zones" "$work/gdnsd/run" "$work/gdnsd/state"
# write_gdnsd_config UDP_THREADS
write_gdnsd_config() {
cat > "$work/gdnsd/config" <<CFG
options => {
  listen => { 127.0.0.1:$port_gdnsd => { udp_threads => $1 } }
  tcp_threads => 1
  run_dir => $work/gdnsd/run
  state_dir => $work/gdnsd/state
}
plugins => {
  geoip => {
    maps => {
      demo => {
        geoip2_db => $work/geo.mmdb
        datacenters => [a, b, c]
        auto_dc_coords => { a => [50.11, 8.68], b => [38.95, -77.45], c => [1.35, 103.82] }
      }
    }
    resources => {
      live => {
        map => demo
        dcmap => {
          a => [127.0.1.1, 127.0.1.2]
          b => [127.0.2.1, 127.0.2.2]
          c => [127.0.3.1, 127.0.3.2]
        }
      }
    }
  }
}
CFG
}
cat > "$work/gdnsd/zones/example.com" <<ZONE
@ 3600 SOA ns1 hostmaster 1 3600 600 1209600 60
@ 86400 NS ns1
ns1 86400 A 127.0.0.53
live 20 DYNA geoip!live
ZONE

# ECS: 198.51.100.0/24 (region b in the demo MMDB): family 1, source 24, scope 0.
ecs="${ECS_OPT:-8:00011800c63364}"
echo "live.example.com A" > "$work/queries.txt"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results="$work/results.txt"

# measure NAME PID PORT: one dnsperf run on core 1; appends "NAME qps µs/query lost" to results
measure() {
  local name=$1 pid=$2 port=$3
  local before after qps queries lost us
  before=$(cpu_ticks "$pid")
  taskset -c 1 dnsperf -s 127.0.0.1 -p "$port" -d "$work/queries.txt" -l "$secs" -c "$clients" \
    -T 1 -q 1000 -E "$ecs" > "$work/$name.out" 2>&1
  after=$(cpu_ticks "$pid")
  qps=$(awk '/Queries per second/ {print $4}' "$work/$name.out")
  queries=$(awk '/Queries completed/ {print $3}' "$work/$name.out")
  lost=$(awk '/Queries lost/ {print $3}' "$work/$name.out")
  us=$(awk -v t=$((after - before)) -v hz="$hz" -v q="$queries" 'BEGIN { printf "%.2f", t * 1e6 / hz / q }')
  printf '  %-22s qps %10s   CPU µs/query %6s   (completed %s, lost %s)\n' "$name" "$qps" "$us" "$queries" "$lost"
  echo "$name $qps $us $lost" >> "$results"
}

wait_skein() {
  for _ in $(seq 100); do
    curl -sf "127.0.0.1:$metrics/metrics" 2>/dev/null | grep -q 'region="c",edge="c2",state="up"} 1' && return
    sleep 0.2
  done
  echo "skein-dns did not see its edges up" >&2; exit 1
}

# run_skein NAME ENGINE WORKERS CPUSET
run_skein() {
  local spid
  write_skein_config "$3" "$2"
  taskset -c "$4" "$skein" --config "$work/skein-dns.toml" --log warn & spid=$!; pids+=($spid)
  wait_skein
  [ "$round" -gt 1 ] || echo "  $1 sample answer: $(dig @127.0.0.1 -p "$port_skein" live.example.com A +subnet=198.51.100.0/24 +short | tr '\n' ' ')"
  measure "$1" "$spid" "$port_skein"
  kill "$spid"; wait "$spid" 2>/dev/null || true
}

# run_gdnsd NAME THREADS CPUSET
run_gdnsd() {
  local gpid
  write_gdnsd_config "$2"
  gdnsd -c "$work/gdnsd" checkconf >/dev/null 2>&1 || { gdnsd -c "$work/gdnsd" checkconf; exit 1; }
  taskset -c "$3" gdnsd -c "$work/gdnsd" start > "$work/gdnsd.log" 2>&1 & gpid=$!; pids+=($gpid)
  for _ in $(seq 50); do dig @127.0.0.1 -p "$port_gdnsd" example.com SOA +short >/dev/null 2>&1 && break; sleep 0.2; done
  [ "$round" -gt 1 ] || echo "  $1 sample answer: $(dig @127.0.0.1 -p "$port_gdnsd" live.example.com A +subnet=198.51.100.0/24 +short | tr '\n' ' ')"
  measure "$1" "$gpid" "$port_gdnsd"
  kill "$gpid"; wait "$gpid" 2>/dev/null || true
}

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "dnsperf $secs s, $clients clients, ECS $ecs, $rounds rounds"
for round in $(seq "$rounds"); do
  echo "round $round"
  run_skein hickory-1core hickory 1 0
  run_skein batched-1core batched 1 0
  run_gdnsd gdnsd-1core 1 0
  run_skein hickory-2cores hickory 2 0,1
  run_skein batched-2cores batched 2 0,1
  run_gdnsd gdnsd-2cores 2 0,1
done

# median NAME FIELD (2 = qps, 3 = µs/query)
median() {
  awk -v n="$1" -v f="$2" '$1 == n {print $f}' "$results" | sort -g |
    awk '{v[NR] = $1} END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
echo "medians of $rounds rounds:"
for name in hickory-1core batched-1core gdnsd-1core hickory-2cores batched-2cores gdnsd-2cores; do
  printf '  %-16s qps %10s   CPU µs/query %6s\n' "$name" "$(median "$name" 2)" "$(median "$name" 3)"
done
for engine in hickory batched; do
  awk -v e="$engine" -v a="$(median "$engine-1core" 2)" -v b="$(median gdnsd-1core 2)" \
      -v c="$(median "$engine-1core" 3)" -v d="$(median gdnsd-1core 3)" \
      -v s="$(median "$engine-2cores" 2)" 'BEGIN {
    printf "%s / gdnsd (1 core): qps %.2f, CPU µs/query %.2f; %s 2 workers / 1 worker qps %.2f\n", e, a/b, c/d, e, s/a }'
done
awk -v a="$(median gdnsd-2cores 2)" -v b="$(median gdnsd-1core 2)" 'BEGIN { printf "gdnsd 2 threads / 1 thread qps %.2f\n", a/b }'

# Failure detection: kill region c's edges, time until a c client is answered from elsewhere.
write_skein_config 1 hickory
"$skein" --config "$work/skein-dns.toml" --log warn & spid=$!; pids+=($spid)
wait_skein
kill "${c_edges[@]}"
t0=$(date +%s.%N)
for _ in $(seq 400); do
  ans=$(dig @127.0.0.1 -p "$port_skein" live.example.com A +subnet=203.0.113.0/24 +short +time=1 +tries=1 | head -n1)
  case "$ans" in 127.0.3.*|"") sleep 0.02 ;; *) break ;; esac
done
t1=$(date +%s.%N)
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "failure detection: region c answered elsewhere after %.2f s (configured: interval 1 s x fall 3 = 2-3 s + probe timeout)\n", b-a }'
kill "$spid"; wait "$spid" 2>/dev/null || true
