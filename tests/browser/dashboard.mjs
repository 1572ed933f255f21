// Drives the dashboard of a running cluster in headless Chromium, one page kept open for the
// whole run (so a node that joins or dies must show up without a reload). The calling Rust
// test sends one command per line on stdin and reads one JSON line per command on stdout:
//   node <name> <up|down> <timeout_ms>   wait until the cluster view shows the node so
//   points <view> <timeout_ms>           wait until every chart of the view (#cluster, #node/N)
//                                        draws real points; answers the count per chart
//   play <stream> <edge name> <timeout_ms>  play the stream in the streams view's player until
//                                        the video time advances by 2 s with decoded frames
//   dns <edge> <state> <timeout_ms>      wait until the GeoDNS view shows the edge in that state
//   login <token> <ok|refused> <timeout_ms>  give the token the page asks for (dashboard.public
//                                        = false); wait for the cluster view, or for the form
//                                        to come back saying the token was refused
//   shot <hash> <file>                   show a view and save a full-page screenshot
//   viewport <width> <height>            resize the page (a phone: 390 844)
//   quit                                 close the browser; the last line (finish) says ok
// Usage: node dashboard.mjs DASHBOARD_URL
import { createInterface } from 'node:readline';
import { launch, finish } from './browser.mjs';

const url = process.argv[2];
const browser = await launch();
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
const problems = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
await page.goto(url);

const reply = (result) => process.stdout.write(JSON.stringify(result) + '\n');

// Shows the view of `hash` and waits until the page has drawn it.
async function show(hash) {
  await page.evaluate((h) => { if (location.hash !== h) location.hash = h; }, hash);
  const view = hash.slice(1).split('/')[0];
  await page.waitForSelector(`body[data-rendered="${view}"]`, { timeout: 30000 });
}

const commands = {
  async node(name, health, timeout) {
    await show('#cluster');
    const started = Date.now();
    await page.waitForSelector(`.node[data-node="${name}"][data-health="${health}"]`, { timeout: Number(timeout) });
    return { ok: true, ms: Date.now() - started };
  },
  async points(view, timeout) {
    await show(view);
    await page.waitForFunction(() => {
      const charts = [...document.querySelectorAll('.chart')];
      return charts.length > 0 && charts.every((c) => Number(c.dataset.points) > 0);
    }, null, { timeout: Number(timeout), polling: 500 });
    const points = await page.$$eval('.chart', (charts) => Object.fromEntries(charts.map((c) => [c.id, Number(c.dataset.points)])));
    return { ok: true, points };
  },
  async play(stream, edge, timeout) {
    await show('#streams');
    await page.waitForSelector(`tr[data-stream="${stream}"]`, { timeout: Number(timeout) });
    await page.waitForFunction(([s, e]) => {
      const streams = [...document.querySelectorAll('#play-stream option')].map((o) => o.textContent);
      const edges = [...document.querySelectorAll('#play-edge option')].map((o) => o.textContent);
      return streams.includes(s) && edges.includes(e);
    }, [stream, edge], { timeout: Number(timeout) });
    await page.selectOption('#play-stream', { label: stream });
    await page.selectOption('#play-edge', { label: edge });
    await page.click('#play');
    const started = await page.waitForFunction(() => {
      const v = document.querySelector('#video');
      return v.currentTime > 0 ? v.currentTime : false;
    }, null, { timeout: Number(timeout), polling: 200 }).then((h) => h.jsonValue());
    await page.waitForFunction((t0) => document.querySelector('#video').currentTime >= t0 + 2, started, { timeout: Number(timeout), polling: 200 });
    const video = await page.$eval('#video', (v) => ({
      currentTime: v.currentTime,
      frames: v.getVideoPlaybackQuality().totalVideoFrames,
      width: v.videoWidth,
      height: v.videoHeight,
      url: v.dataset.url,
    }));
    return { ok: video.frames > 0 && video.width > 0, video };
  },
  async dns(edge, edgeState, timeout) {
    await show('#dns');
    const started = Date.now();
    await page.waitForSelector(`tr[data-edge="${edge}"][data-state="${edgeState}"]`, { timeout: Number(timeout) });
    return { ok: true, ms: Date.now() - started };
  },
  async login(token, expect, timeout) {
    await page.waitForSelector('#login', { timeout: Number(timeout) });
    await page.fill('#token', token);
    await page.click('#login button');
    if (expect === 'refused') {
      await page.waitForFunction(() => document.querySelector('#login')?.textContent.includes('refused'), null, { timeout: Number(timeout) });
    } else {
      await page.waitForSelector('body[data-rendered="cluster"] .node', { timeout: Number(timeout) });
    }
    return { ok: true };
  },
  async viewport(width, height) {
    await page.setViewportSize({ width: Number(width), height: Number(height) });
    return { ok: true };
  },
  async shot(hash, file) {
    await show(hash);
    await page.waitForTimeout(1500);
    await page.screenshot({ path: file, fullPage: true });
    return { ok: true, file };
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const [command, ...args] = line.trim().split(/\s+/);
  if (command === 'quit') break;
  const run = commands[command];
  if (!run) { reply({ ok: false, error: `unknown command ${command}` }); continue; }
  try {
    reply(await run(...args));
  } catch (e) {
    const status = await page.$eval('#status', (s) => s.textContent).catch(() => '');
    reply({ ok: false, error: e.message.split('\n')[0], status, problems });
  }
}
await browser.close();
finish({ ok: problems.length === 0, problems });
