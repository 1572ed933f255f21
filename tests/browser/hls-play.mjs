// Plays an HLS playlist with hls.js in low-latency mode in headless Chromium.
//   node hls-play.mjs PLAYLIST_URL SECONDS PUBLISH_START_MS SEGMENT_MS [low-latency|plain]
// Prints {ok, advanced_s, latency_ms: [...], errors}: ok when the video element's time advanced by at least half of SECONDS. Latency samples are the wall
// clock minus the publisher's start minus the stream timestamp on screen; the stream
// timestamp comes from the segment playing (its media sequence number times the segment grid,
// as the test source has a keyframe on every grid line) plus the position within it.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { fileURLToPath } from 'node:url';
import { launch, finish } from './browser.mjs';

const [url, secondsArg, publishStartArg, gridArg, mode] = process.argv.slice(2);
const lowLatency = mode !== 'plain';
const seconds = Number(secondsArg || 10);
const publishStart = Number(publishStartArg || 0);
const gridMs = Number(gridArg || 1000);
const hlsJs = readFileSync(fileURLToPath(new URL('./node_modules/hls.js/dist/hls.min.js', import.meta.url)));
const html = `<!doctype html><html><body>
<video id="v" muted autoplay playsinline></video>
<script src="/hls.min.js"></script>
<script>
  window.state = { errors: [], sn: null, start: 0 };
  const video = document.getElementById('v');
  const hls = new Hls({ lowLatencyMode: ${lowLatency}, backBufferLength: 10 });
  hls.on(Hls.Events.FRAG_CHANGED, (_, data) => {
    window.state.sn = data.frag.sn;
    window.state.start = data.frag.start;
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    window.state.errors.push(data.type + ':' + data.details + (data.fatal ? ':fatal' : ''));
  });
  hls.loadSource(${JSON.stringify(url)});
  hls.attachMedia(video);
  video.play().catch(e => window.state.errors.push('play:' + e));
</script></body></html>`;

// The page comes from a server of its own on loopback: another origin than the node's (so the
// playlist is fetched with CORS), in the loopback address space Chromium lets fetch loopback.
const server = createServer((req, res) => {
  const js = req.url === '/hls.min.js';
  res.writeHead(200, { 'content-type': js ? 'application/javascript' : 'text/html' });
  res.end(js ? hlsJs : html);
});
await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
const browser = await launch();
const result = { ok: false, advanced_s: 0, latency_ms: [], errors: [] };
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/`);
  const deadline = Date.now() + (seconds + 20) * 1000;
  let first = null;
  while (Date.now() < deadline) {
    await page.waitForTimeout(250);
    const s = await page.evaluate(() => ({
      t: document.getElementById('v').currentTime,
      sn: window.state.sn,
      start: window.state.start,
      errors: window.state.errors,
    }));
    result.errors = s.errors;
    if (s.t > 0 && first === null) first = { t: s.t, at: Date.now() };
    if (first === null) continue;
    result.advanced_s = s.t - first.t;
    if (s.sn !== null && publishStart > 0) {
      const onScreenMs = s.sn * gridMs + (s.t - s.start) * 1000;
      result.latency_ms.push(Math.round(Date.now() - publishStart - onScreenMs));
    }
    if (Date.now() - first.at >= seconds * 1000) break;
  }
  result.ok = result.advanced_s >= seconds / 2;
} catch (e) {
  result.errors.push(String(e));
} finally {
  await browser.close();
  server.close();
}
finish(result);
