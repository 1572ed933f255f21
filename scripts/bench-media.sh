#!/usr/bin/env bash
# Media fan-out benchmark: skein and nginx-rtmp side by side, same machine, same run.
#
# One 2.7 Mbit/s H.264 720p30 + AAC stream is pushed with `ffmpeg -re -stream_loop -1 -c copy`;
# the server is pinned to core 0, the publisher and the load client (`skein bench play`) to
# core 1. For each player count it reports server CPU seconds per GB delivered, the players'
# first-frame time and worst inter-frame gap, and resident memory per connected player.
#
# Usage: scripts/bench-media.sh [PLAYERS...]      (default: 200 500 1000)
# Env:   DURATION=20 (seconds of playing per point)
set -euo pipefail
cd "$(dirname "$0")/.."

PLAYERS=("${@:-200 500 1000}")
read -r -a PLAYERS <<<"${PLAYERS[*]}"
DURATION=${DURATION:-20}
SERVER_CORE=0
LOAD_CORE=1
WORK=$(mktemp -d -t skein-bench-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || [ ! -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || ! need ffmpeg || ! need taskset; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    nginx-light libnginx-mod-rtmp ffmpeg util-linux >/dev/null
fi
cargo build --release --bin skein --quiet
SKEIN=target/release/skein

# The test stream: 60 s of 720p30 H.264 at 2.7 Mbit/s (keyframe every 2 s) + AAC, looped.
SOURCE="$WORK/source.flv"
taskset -c "$LOAD_CORE" ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
  -t 60 -c:v libx264 -preset veryfast -b:v 2600k -maxrate 2700k -bufsize 2700k -g 60 -bf 0 \
  -pix_fmt yuv420p -c:a aac -b:a 96k -f flv "$SOURCE"

cpu_ticks() { # utime + stime of a pid, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
rss_kib() {
  awk '/^VmRSS/ {print $2}' "/proc/$1/status"
}
CLK=$(getconf CLK_TCK)

start_nginx() {
  local port=$1 prefix="$WORK/nginx"
  mkdir -p "$prefix/logs"
  cat >"$prefix/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
master_process on;
error_log $prefix/logs/error.log warn;
pid $prefix/nginx.pid;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:$port;
    chunk_size 4096;
    application live { live on; }
  }
}
EOF
  taskset -c "$SERVER_CORE" nginx -p "$prefix" -c "$prefix/nginx.conf" </dev/null &
  sleep 1
  # The worker does the work; measure it.
  SERVER_PID=$(pgrep -f "nginx: worker process" | head -1)
}

start_skein() {
  local port=$1
  # All load comes from 127.0.0.1: lift the per-address cap.
  # Like nginx-rtmp here, anyone may publish.
  printf '[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n[auth]\npublish = "open"\n' >"$WORK/skein.toml"
  RUST_LOG=warn taskset -c "$SERVER_CORE" "$SKEIN" run --config "$WORK/skein.toml" \
    --rtmp-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$((port + 1))" </dev/null >/dev/null 2>&1 &
  SERVER_PID=$!
  sleep 1
}

# measure NAME PID PORT PLAYERS -> one result line
measure() {
  local name=$1 pid=$2 port=$3 players=$4 url="rtmp://127.0.0.1:$3/live/bench"
  local rss0 t0 t1 rss1 json
  rss0=$(rss_kib "$pid")
  t0=$(cpu_ticks "$pid")
  taskset -c "$LOAD_CORE" "$SKEIN" bench play --url "$url" --players "$players" \
    --duration "$DURATION" --connect-rate 1000 --json >"$WORK/play.json" &
  local bench=$! rss
  # Peak resident memory while the players are connected.
  rss1=$rss0
  while kill -0 "$bench" 2>/dev/null; do
    rss=$(rss_kib "$pid"); [ "$rss" -gt "$rss1" ] && rss1=$rss
    sleep 0.5
  done
  wait "$bench"
  t1=$(cpu_ticks "$pid")
  json=$(cat "$WORK/play.json")
  python3 - "$name" "$players" "$t0" "$t1" "$CLK" "$rss0" "$rss1" "$json" <<'PY'
import json, sys
name, players, t0, t1, clk, rss0, rss1, report = sys.argv[1:]
r = json.loads(report)
cpu = (int(t1) - int(t0)) / int(clk)
gb = r["bytes"] / 1e9
pct = lambda k, p: (r.get(k) or {}).get(p)
print(json.dumps({
    "server": name, "players": int(players), "players_with_video": r["players_with_video"],
    "errors": r["errors"], "cpu_s": round(cpu, 2), "gb": round(gb, 3),
    "cpu_s_per_gb": round(cpu / gb, 3) if gb else None,
    "first_frame_p95_ms": pct("first_frame_ms", "p95"),
    "worst_gap_p99_ms": pct("worst_gap_ms", "p99"),
    "rss_per_player_kib": round((int(rss1) - int(rss0)) / int(players), 1),
    "mbps": round(r["throughput_mbps"], 1),
}))
PY
}

run_server() {
  local name=$1 port=$2 pid publisher
  if [ "$name" = nginx-rtmp ]; then start_nginx "$port"; else start_skein "$port"; fi
  pid=$SERVER_PID
  taskset -c "$LOAD_CORE" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$SOURCE" \
    -c copy -f flv "rtmp://127.0.0.1:$port/live/bench" </dev/null &
  publisher=$!
  sleep 4
  for n in "${PLAYERS[@]}"; do
    measure "$name" "$pid" "$port" "$n"
  done
  kill "$publisher" 2>/dev/null || true
  if [ "$name" = nginx-rtmp ]; then kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true; else kill "$pid"; fi
  wait 2>/dev/null || true
  sleep 1
}

echo "# machine: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores"
echo "# source: 720p30 H.264 2.7 Mbit/s + AAC; duration per point: ${DURATION}s; server on core $SERVER_CORE, load on core $LOAD_CORE"
run_server nginx-rtmp 19350 >"$WORK/nginx.jsonl"
cat "$WORK/nginx.jsonl"
run_server skein 19360 >"$WORK/skein.jsonl"
cat "$WORK/skein.jsonl"
python3 - "$WORK/nginx.jsonl" "$WORK/skein.jsonl" <<'PY'
import json, sys
nginx = {r["players"]: r for r in map(json.loads, open(sys.argv[1]))}
skein = {r["players"]: r for r in map(json.loads, open(sys.argv[2]))}
print("\n| players | server | CPU-s/GB | ratio skein/nginx | worst gap p99 ms | first frame p95 ms | RSS/player KiB | players with video |")
print("|---|---|---|---|---|---|---|---|")
for n in sorted(skein):
    for name, r in (("nginx-rtmp", nginx.get(n)), ("skein", skein[n])):
        if not r:
            continue
        ratio = ""
        if name == "skein" and nginx.get(n) and nginx[n]["cpu_s_per_gb"] and r["cpu_s_per_gb"]:
            ratio = f'{r["cpu_s_per_gb"] / nginx[n]["cpu_s_per_gb"]:.2f}'
        print(f'| {n} | {name} | {r["cpu_s_per_gb"]} | {ratio} | {r["worst_gap_p99_ms"]} | {r["first_frame_p95_ms"]} | {r["rss_per_player_kib"]} | {r["players_with_video"]} |')
PY
