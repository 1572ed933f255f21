#!/usr/bin/env bash
# HLS glass-to-glass latency: hls.js in headless Chromium, LL-HLS and plain HLS, one node.
#
# ffmpeg publishes a 320x240 25 fps H.264 (keyframe every second) + AAC test source with `-re`;
# hls.js plays `/live/cam.m3u8` for DURATION seconds, first in low-latency mode, then plain.
# Each 250 ms the page samples wall clock - publisher start - stream time on screen (see
# tests/browser/hls-play.mjs); the publisher's start is taken just before ffmpeg is started,
# so its start-up time (about 0.3 s) counts as latency. Prints p50/p90 per mode.
#
# Then CPU per GB delivered over HLS and resident memory, skein against nginx-rtmp's HLS
# (`hls on`, TS segments of 1 s, served by nginx) in the same run: the same 720p30 2.7 Mbit/s
# stream is pushed to each with `ffmpeg -re -c copy`; PLAYERS simulated plain-HLS players
# (threads that reload the playlist every 0.5 s and fetch each new segment) load it for
# DURATION seconds. The server is pinned to core 0, publisher and players to core 1.
#
# Usage: scripts/bench-hls.sh
# Env:   DURATION=20 (seconds per point), PLAYERS=100, SKEIN=target/release/skein
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
PLAYERS=${PLAYERS:-100}
SERVER_CORE=0
LOAD_CORE=1
WORK=$(mktemp -d -t skein-bench-hls-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -z "${SKEIN:-}" ]; then
  cargo build --release --bin skein --quiet
  SKEIN=target/release/skein
fi
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --silent)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
RTMP=$(free_port); HTTP=$(free_port)
cat >"$WORK/skein.toml" <<TOML
[node]
name = "bench-hls"
[rtmp]
listen = "127.0.0.1:$RTMP"
[http]
listen = "127.0.0.1:$HTTP"
[cluster]
data_dir = "$WORK/data"
[auth]
publish = "open"
TOML
"$SKEIN" run --config "$WORK/skein.toml" >"$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/api/v1/health" >/dev/null && break; sleep 0.1; done

START_MS=$(date +%s%3N)
ffmpeg -hide_banner -loglevel error -re \
  -f lavfi -i testsrc=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t $((DURATION * 2 + 120)) -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -bf 0 \
  -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "rtmp://127.0.0.1:$RTMP/live/cam" </dev/null &
PUBLISHER_PID=$!
sleep 3

for mode in low-latency plain; do
  node tests/browser/hls-play.mjs "http://127.0.0.1:$HTTP/live/cam.m3u8" "$DURATION" "$START_MS" 1000 "$mode" \
    >"$WORK/$mode.json" || true
  # shellcheck disable=SC2016 # JavaScript, not shell: the quotes keep it from the shell.
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const s = r.latency_ms.slice().sort((a, b) => a - b);
    const q = p => s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
    console.log(`${process.argv[2].padEnd(12)} played=${r.ok} advanced=${r.advanced_s.toFixed(1)}s samples=${s.length} p50=${q(0.5)}ms p90=${q(0.9)}ms errors=${r.errors.length}`);
  ' "$WORK/$mode.json" "$mode"
done

# --- CPU per GB against nginx-rtmp's HLS ---------------------------------------------------
kill "$PUBLISHER_PID" "$NODE_PID" 2>/dev/null || true
wait "$PUBLISHER_PID" "$NODE_PID" 2>/dev/null || true
SOURCE="$WORK/source.flv"
taskset -c "$LOAD_CORE" ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" -f lavfi -i "sine=frequency=440:sample_rate=44100" \
  -t 60 -c:v libx264 -preset veryfast -b:v 2600k -maxrate 2700k -bufsize 2700k -g 30 -bf 0 \
  -pix_fmt yuv420p -c:a aac -b:a 96k -f flv "$SOURCE"
cat >"$WORK/players.py" <<'PY'
import sys, threading, time, urllib.request, urllib.parse
url, players, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
total = [0] * players
def player(i):
    seen, end = set(), time.time() + seconds
    first = True
    while time.time() < end:
        try:
            text = urllib.request.urlopen(url, timeout=10).read().decode()
        except Exception:
            time.sleep(0.5); continue
        uris = [l for l in text.splitlines() if l and not l.startswith('#')]
        if first:  # live: start at the newest segment
            seen.update(uris[:-1]); first = False
        for uri in uris:
            if uri not in seen:
                seen.add(uri)
                try:
                    total[i] += len(urllib.request.urlopen(urllib.parse.urljoin(url, uri), timeout=10).read())
                except Exception:
                    pass
        time.sleep(0.5)
threads = [threading.Thread(target=player, args=(i,)) for i in range(players)]
[t.start() for t in threads]; [t.join() for t in threads]
print(sum(total))
PY
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
CLK=$(getconf CLK_TCK)

measure() { # NAME PID PLAYLIST_URL
  local name=$1 pid=$2 url=$3 before after bytes
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && break; sleep 0.2; done
  before=$(cpu_ticks "$pid")
  bytes=$(taskset -c "$LOAD_CORE" python3 "$WORK/players.py" "$url" "$PLAYERS" "$DURATION")
  after=$(cpu_ticks "$pid")
  awk -v n="$name" -v t=$((after - before)) -v b="$bytes" -v clk="$CLK" -v rss="$(rss_kib "$pid")" -v p="$PLAYERS" \
    'BEGIN { gb = b / 1e9; printf "%-12s players=%d delivered=%.3f GB cpu=%.2f s cpu_per_gb=%.2f s rss=%d MiB\n", n, p, gb, t / clk, (gb > 0 ? t / clk / gb : 0), rss / 1024 }'
}

# nginx-rtmp with HLS, served by the same nginx worker.
NGINX="$WORK/nginx"; mkdir -p "$NGINX/logs" "$NGINX/hls"
# The worker may run as another user: it writes the segments and reads them back.
chmod 755 "$WORK" "$NGINX"; chmod 777 "$NGINX/hls"
NRTMP=$(free_port); NHTTP=$(free_port)
cat >"$NGINX/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
master_process on;
error_log $NGINX/logs/error.log warn;
pid $NGINX/nginx.pid;
events { worker_connections 4096; }
rtmp { server { listen 127.0.0.1:$NRTMP; application live { live on; hls on; hls_path $NGINX/hls; hls_fragment 1s; hls_playlist_length 6s; } } }
http {
  access_log off;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server { listen 127.0.0.1:$NHTTP; location /hls/ { alias $NGINX/hls/; add_header Cache-Control no-cache; } }
}
CONF
taskset -c "$SERVER_CORE" nginx -p "$NGINX" -c "$NGINX/nginx.conf" </dev/null &
sleep 1
NGINX_PID=$(pgrep -f "nginx: worker process" -P "$(cat "$NGINX/nginx.pid")" | head -1)
taskset -c "$LOAD_CORE" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$SOURCE" -c copy -f flv \
  "rtmp://127.0.0.1:$NRTMP/live/cam" </dev/null &
NGINX_FFMPEG=$!
sleep 4
measure nginx-rtmp "$NGINX_PID" "http://127.0.0.1:$NHTTP/hls/cam.m3u8"
kill "$NGINX_FFMPEG"; kill "$(cat "$NGINX/nginx.pid")"; sleep 1

# skein, plain-HLS players fetching whole segments (the same load).
SRTMP=$(free_port); SHTTP=$(free_port)
printf '[node]\nname = "bench-hls-cpu"\n[rtmp]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\n[limits]\nmax_connections = 100000\nmax_connections_per_ip = 100000\n[cluster]\ndata_dir = "%s"\n[auth]\npublish = "open"\n' \
  "$SRTMP" "$SHTTP" "$WORK/data-cpu" >"$WORK/skein-cpu.toml"
RUST_LOG=warn taskset -c "$SERVER_CORE" "$SKEIN" run --config "$WORK/skein-cpu.toml" </dev/null >/dev/null 2>&1 &
SKEIN_PID=$!
sleep 1
taskset -c "$LOAD_CORE" ffmpeg -hide_banner -loglevel error -re -stream_loop -1 -i "$SOURCE" -c copy -f flv \
  "rtmp://127.0.0.1:$SRTMP/live/cam" </dev/null &
sleep 4
measure skein "$SKEIN_PID" "http://127.0.0.1:$SHTTP/live/cam.m3u8"
