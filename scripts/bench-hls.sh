#!/usr/bin/env bash
# HLS glass-to-glass latency: hls.js in headless Chromium, LL-HLS and plain HLS, one node.
#
# ffmpeg publishes a 320x240 25 fps H.264 (keyframe every second) + AAC test source with `-re`;
# hls.js plays `/live/cam.m3u8` for DURATION seconds, first in low-latency mode, then plain.
# Each 250 ms the page samples wall clock - publisher start - stream time on screen (see
# tests/browser/hls-play.mjs); the publisher's start is taken just before ffmpeg is started,
# so its start-up time (about 0.3 s) counts as latency. Prints p50/p90 per mode.
#
# Usage: scripts/bench-hls.sh        Env: DURATION=20 (seconds per mode), SKEIN=target/release/skein
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-20}
WORK=$(mktemp -d -t skein-bench-hls-XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

if [ -z "${SKEIN:-}" ]; then
  cargo build --release --bin skein --quiet
  SKEIN=target/release/skein
fi
(cd tests/browser && [ -d node_modules ] || npm ci --silent)

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
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$HTTP/api/v1/health" >/dev/null && break; sleep 0.1; done

START_MS=$(date +%s%3N)
ffmpeg -hide_banner -loglevel error -re \
  -f lavfi -i testsrc=size=320x240:rate=25 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -t $((DURATION * 2 + 120)) -c:v libx264 -preset ultrafast -tune zerolatency -g 25 -bf 0 \
  -pix_fmt yuv420p -c:a aac -b:a 64k -f flv "rtmp://127.0.0.1:$RTMP/live/cam" </dev/null &
sleep 3

for mode in low-latency plain; do
  node tests/browser/hls-play.mjs "http://127.0.0.1:$HTTP/live/cam.m3u8" "$DURATION" "$START_MS" 1000 "$mode" \
    >"$WORK/$mode.json" || true
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const s = r.latency_ms.slice().sort((a, b) => a - b);
    const q = p => s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN;
    console.log(`${process.argv[2].padEnd(12)} played=${r.ok} advanced=${r.advanced_s.toFixed(1)}s samples=${s.length} p50=${q(0.5)}ms p90=${q(0.9)}ms errors=${r.errors.length}`);
  ' "$WORK/$mode.json" "$mode"
done
