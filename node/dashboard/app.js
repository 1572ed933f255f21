// Skein dashboard: reads this node's API (and, through it, the other members' and the GeoDNS
// servers'), and draws the cluster, node, streams, GeoDNS and events views. No framework; the
// charts are SVG drawn here; the player is mpegts.js (vendored).
'use strict';

const RANGES = {
  live: { range: '15m', step: '5s', refresh: 5000 },
  '1h': { range: '1h', step: '30s', refresh: 15000 },
  '1d': { range: '1d', step: '5m', refresh: 60000 },
  '7d': { range: '7d', step: '1h', refresh: 300000 },
};
const COLORS = ['#2e6bd8', '#1a9b5c', '#c98a12', '#9a4fd0', '#d2423b', '#168a99', '#7d6b3a', '#c2478f'];
const state = { range: 'live', cluster: null, standalone: false, me: null, charts: {}, chartsAt: 0, player: null, chartedStream: null };

const $ = (sel, root = document) => root.querySelector(sel);
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

// With dashboard.public = false the views need the admin token: asked once, kept for the tab.
const TOKEN_KEY = 'skein-admin-token';

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(path, { cache: 'no-store', headers });
  if (!response.ok) {
    const error = new Error(`${path}: ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function askToken(main, refused) {
  if ($('#login', main)) return;
  main.innerHTML = `<section class="card" id="login"><h2>Admin token</h2>
    <p class="muted">${refused ? 'That token was refused.' : 'This cluster shows its views to the admin token only (dashboard.public = false).'}</p>
    <form><input type="password" id="token" autocomplete="current-password" aria-label="admin token" placeholder="admin token">
    <button class="play" type="submit">Open</button></form></section>`;
  $('#login form', main).addEventListener('submit', (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $('#token', main).value.trim());
    main.innerHTML = '';
    refresh();
  });
}

function format(value, unit) {
  if (value == null || Number.isNaN(value)) return '–';
  const scaled = (v, units, base) => {
    let i = 0;
    while (Math.abs(v) >= base && i < units.length - 1) { v /= base; i += 1; }
    return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
  };
  switch (unit) {
    case 'ratio': return `${(value * 100).toFixed(1)} %`;
    case 'cores': return value.toFixed(2);
    case 'bytes': return scaled(value, ['B', 'KiB', 'MiB', 'GiB', 'TiB'], 1024);
    case 'bps': return scaled(value, ['bit/s', 'kbit/s', 'Mbit/s', 'Gbit/s'], 1000);
    case 'per_s': return `${value >= 100 ? Math.round(value) : value.toFixed(1)}/s`;
    default: return value >= 100 ? Math.round(value).toString() : (Math.round(value * 10) / 10).toString();
  }
}

// The members: the cluster document's nodes, or this node alone when it is not in a cluster.
function members() {
  if (state.standalone) {
    return [{ name: state.me?.name, region: state.me?.region, health: 'up', raft: 'none', roles: { edge: true, origin: true },
      public_addr: { http: location.host }, self: true }];
  }
  return (state.cluster?.nodes ?? []).map((n) => ({ ...n, self: n.name === state.me?.name }));
}

function memberPath(name, view) {
  const self = members().find((m) => m.name === name)?.self;
  return self ? `/api/v1/${view}` : `/api/v1/members/${encodeURIComponent(name)}/${view}`;
}

async function loadCluster() {
  state.me = state.me ?? await api('/api/v1/node');
  try {
    state.cluster = await api('/api/v1/cluster');
    state.standalone = false;
  } catch (e) {
    if (e.status !== 404) throw e;
    state.standalone = true;
  }
}

// ---- charts ----

// series: [{ name, points: [{t, v}], sum }]; draws one SVG with a line per series, broken at gaps.
function drawChart(el, title, unit, series) {
  const all = series.flatMap((s) => s.points.filter((p) => p.v != null));
  const ts = series.flatMap((s) => s.points.map((p) => p.t));
  const t0 = Math.min(...ts), t1 = Math.max(...ts);
  const vmax = Math.max(0, ...all.map((p) => p.v)) || 1;
  const W = 600, H = 170, L = 4, R = 4, T = 8, B = 16;
  const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * (W - L - R);
  const y = (v) => T + (1 - v / vmax) * (H - T - B);
  const lines = series.map((s, i) => {
    let d = '', pen = false, drawn = 0;
    for (const p of s.points) {
      if (p.v == null) { pen = false; continue; }
      d += `${pen ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
      pen = true; drawn += 1;
    }
    // A lone point between gaps still shows.
    if (drawn === 1) d += 'h1';
    const color = s.sum ? 'currentColor' : COLORS[i % COLORS.length];
    return { html: `<path class="line${s.sum ? ' sum' : ''}" data-series="${esc(s.name)}" data-points="${drawn}" stroke="${color}" d="${d}"/>`, color, name: s.name, drawn };
  });
  const time = (t) => new Date(t).toLocaleString([], t1 - t0 > 86400000 ? { month: 'short', day: 'numeric' } : { hour: '2-digit', minute: '2-digit' });
  const last = series[0]?.points.filter((p) => p.v != null).at(-1)?.v;
  el.innerHTML = `<h2>${esc(title)} <span class="muted">${format(last, unit)}</span></h2>
    <svg viewBox="0 0 ${W} ${H}" preserveAspectRatio="none" role="img" aria-label="${esc(title)}">
      <line class="axis" x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}"/>
      <line class="axis" x1="${L}" x2="${W - R}" y1="${T}" y2="${T}" stroke-dasharray="2 4"/>
      ${lines.map((l) => l.html).join('')}
      <text x="${L}" y="${H - 3}">${ts.length ? esc(time(t0)) : ''}</text>
      <text x="${W - R}" y="${H - 3}" text-anchor="end">${ts.length ? esc(time(t1)) : ''}</text>
      <text x="${W - R}" y="${T + 10}" text-anchor="end">${esc(format(vmax, unit))}</text>
    </svg>
    <div class="legend">${lines.map((l) => `<span><i style="background:${l.color}"></i>${esc(l.name)}</span>`).join('')}</div>`;
  el.dataset.points = String(lines.reduce((n, l) => n + l.drawn, 0));
}

// `label` names a series of a labelled family, e.g. ['stream', 'live/cam'].
function historyPath(metric, node, label) {
  const r = RANGES[state.range];
  const series = label ? `&${label[0]}=${encodeURIComponent(label[1])}` : '';
  return `/api/v1/history?metric=${metric}&node=${encodeURIComponent(node)}${series}&range=${r.range}&step=${r.step}`;
}

// A chart of the cluster's figure and every node's, from one cluster query.
async function clusterChart(el, title, metric, label) {
  if (state.standalone) return nodeChart(el, title, metric, 'self', label);
  const answer = await api(historyPath(metric, 'cluster', label));
  const name = answer.aggregate === 'sum' ? 'cluster (sum)' : 'cluster (mean)';
  const series = [{ name, sum: true, points: answer.points.map((p) => ({ t: p.t, v: p.value })) }];
  for (const n of answer.nodes) {
    series.push({ name: n.name + (n.answered ? '' : ' (no answer)'), points: (n.points ?? []).map((p) => ({ t: p.t, v: p.mean })) });
  }
  drawChart(el, title, answer.unit, series);
}

async function nodeChart(el, title, metric, node, label) {
  const answer = await api(historyPath(metric, node, label));
  drawChart(el, title, answer.unit, [{ name: answer.node, points: answer.points.map((p) => ({ t: p.t, v: p.mean })) }]);
}

// Charts are redrawn on their range's refresh interval, not on every poll.
async function charts(specs) {
  const due = Date.now() - state.chartsAt >= RANGES[state.range].refresh;
  for (const [id, draw] of specs) {
    let el = document.getElementById(id);
    if (!el) continue;
    if (due || !el.dataset.points) {
      await draw(el).catch((e) => { el.innerHTML = `<h2>${esc(id)}</h2><p class="muted">${esc(e.message)}</p>`; });
    }
  }
  if (due) state.chartsAt = Date.now();
}

// ---- views ----

function nodeRow(n, leaderId) {
  const health = n.health === 'down' ? 'down' : 'up';
  const roles = [n.roles?.edge && 'edge', n.roles?.origin && 'origin'].filter(Boolean).join('+');
  const origin = n.origin ? `<span class="badge">origin ${esc(n.origin)}</span>` : '';
  return `<div class="node" data-node="${esc(n.name)}" data-health="${health}">
    <a href="#node/${encodeURIComponent(n.name)}">${esc(n.name)}</a>
    <span class="badge ${health}">${health}</span>
    ${n.id === leaderId ? '<span class="badge leader">leader</span>' : ''}
    ${n.raft && n.raft !== 'none' ? `<span class="badge">${esc(n.raft)}</span>` : ''}
    <span class="badge">${esc(roles)}</span>${origin}
    ${n.load ? `<span class="muted">${n.load.connections} conn · ${format(n.load.cpu, 'ratio')} CPU · ${format(n.load.egress_bps, 'bps')}</span>` : ''}
  </div>`;
}

const CLUSTER_CHARTS = [
  ['c-viewers', 'Viewers', 'viewers'], ['c-egress', 'Egress', 'egress_bps'], ['c-ingress', 'Ingress', 'ingress_bps'],
  ['c-cpu', 'CPU (machine)', 'cpu'], ['c-rss', 'Memory (node process)', 'process_rss'], ['c-streams', 'Streams', 'streams'],
];

async function viewCluster(main) {
  const nodes = members();
  const c = state.cluster;
  const regions = new Map();
  for (const r of c?.regions ?? []) regions.set(r.name, { ...r, nodes: [] });
  for (const n of nodes) {
    if (!regions.has(n.region)) regions.set(n.region, { name: n.region, nodes: [] });
    regions.get(n.region).nodes.push(n);
  }
  const up = nodes.filter((n) => n.health !== 'down').length;
  const leader = nodes.find((n) => n.id === c?.leader);
  const pool = c?.origin_pool;
  const nameOf = (id) => nodes.find((n) => n.id === id)?.name ?? `node ${id}`;
  if (!$('#cluster-view', main)) {
    main.innerHTML = `<section id="cluster-view"><div class="card totals" id="totals"></div></section>
      <section class="grid" id="regions"></section>
      <section class="grid">${CLUSTER_CHARTS.map(([id]) => `<div class="card chart" id="${id}"></div>`).join('')}</section>`;
  }
  $('#totals', main).innerHTML = [
    [`${up} / ${nodes.length}`, 'nodes up'],
    [leader ? esc(leader.name) : (state.standalone ? 'standalone' : 'none'), 'Raft leader'],
    [pool ? `${pool.active.length} / ${pool.target}` : '–', 'origins (active / target)'],
    [pool ? esc(pool.active.map(nameOf).join(', ') || '–') : '–', 'origin pool'],
    [String(regions.size), 'regions'],
  ].map(([b, s]) => `<div class="total"><b>${b}</b><span>${s}</span></div>`).join('');
  $('#regions', main).innerHTML = [...regions.values()].map((r) => `<div class="card region" data-region="${esc(r.name)}">
      <h2>${esc(r.name)} <span class="muted">${r.lat != null ? `${r.lat.toFixed(1)}, ${r.lon.toFixed(1)}` : ''}</span></h2>
      ${r.nodes.map((n) => nodeRow(n, c?.leader)).join('') || '<p class="muted">no nodes</p>'}</div>`).join('');
  await charts(CLUSTER_CHARTS.map(([id, title, metric]) => [id, (el) => clusterChart(el, title, metric)]));
}

const NODE_CHARTS = [
  ['n-cpu', 'CPU (machine)', 'cpu'], ['n-pcpu', 'CPU (node process, cores)', 'process_cpu'],
  ['n-mem', 'Memory used (machine)', 'memory_used'], ['n-rss', 'Memory (node process)', 'process_rss'],
  ['n-netin', 'Network in (interfaces)', 'net_in_bps'], ['n-netout', 'Network out (interfaces)', 'net_out_bps'],
  ['n-conn', 'Connections', 'connections'], ['n-egress', 'Egress', 'egress_bps'],
  ['n-pulls', 'Relay pulls', 'relay_pulls'], ['n-pushes', 'Relay pushes in', 'relay_pushes'],
];

async function viewNode(main, name) {
  const nodes = members();
  name = name || state.me?.name;
  const node = nodes.find((n) => n.name === name);
  const key = `node-view-${name}`;
  if (!$(`[data-key="${CSS.escape(key)}"]`, main)) {
    state.chartsAt = 0;
    main.innerHTML = `<section data-key="${esc(key)}" class="card"><nav id="node-tabs"></nav></section>
      <section class="grid"><div class="card" id="inventory"></div><div class="card" id="node-summary"></div><div class="card" id="node-relay"></div></section>
      <section class="grid">${NODE_CHARTS.map(([id]) => `<div class="card chart" id="${id}"></div>`).join('')}</section>`;
  }
  $('#node-tabs', main).innerHTML = nodes.map((n) => `<a href="#node/${encodeURIComponent(n.name)}" class="${n.name === name ? 'on' : ''}">${esc(n.name)} <span class="badge ${n.health === 'down' ? 'down' : 'up'}">${n.health === 'down' ? 'down' : 'up'}</span></a>`).join('');
  if (!node) { $('#inventory', main).innerHTML = `<p>no node named ${esc(name)}</p>`; return; }
  const [info, summary] = await Promise.all([
    api(memberPath(name, 'node')).catch(() => null),
    api(memberPath(name, 'summary')).catch(() => null),
  ]);
  const inv = info?.inventory;
  $('#inventory', main).innerHTML = inv ? `<h2>${esc(name)} · ${esc(inv.host)}</h2><table>
      <tr><th>region</th><td>${esc(info.region)}</td></tr>
      <tr><th>CPU</th><td>${esc(inv.cpu_model)} · ${inv.cores} cores${inv.physical_cores ? ` (${inv.physical_cores} physical)` : ''}</td></tr>
      <tr><th>memory</th><td>${format(inv.memory_bytes, 'bytes')}</td></tr>
      <tr><th>system</th><td>${esc(inv.os)}</td></tr>
      <tr><th>interfaces</th><td>${inv.interfaces.map((i) => `${esc(i.name)} ${esc(i.addresses.join(' '))}`).join('<br>')}</td></tr></table>`
    : `<h2>${esc(name)}</h2><p class="muted">${node.health === 'down' ? 'down: no answer' : 'no inventory yet'}</p>`;
  $('#node-summary', main).innerHTML = summary ? `<h2>Now</h2><table>
      <tr><th>connections</th><td>${summary.connections} (${summary.publishers} publishing, ${summary.players} playing)</td></tr>
      <tr><th>streams</th><td>${summary.streams}</td></tr>
      <tr><th>egress / ingress</th><td>${format(summary.egress_bps, 'bps')} / ${format(summary.ingress_bps, 'bps')}</td></tr>
      <tr><th>CPU</th><td>${format(summary.cpu, 'ratio')} machine · ${format(summary.process_cpu_cores, 'cores')} cores node</td></tr>
      <tr><th>memory</th><td>${format(summary.memory_rss_bytes, 'bytes')}</td></tr>
      <tr><th>uptime</th><td>${Math.round(summary.uptime_secs)} s</td></tr></table>` : '<h2>Now</h2><p class="muted">no answer</p>';
  const relay = info?.relay;
  const nameOf = (id) => nodes.find((n) => n.id === id)?.name ?? `node ${id}`;
  $('#node-relay', main).innerHTML = relay ? `<h2>Relay</h2><table>
      <tr><th>pulls</th><td>${esc(relay.pulls.join(', ') || '–')}</td></tr>
      <tr><th>pushed in</th><td>${esc(Object.entries(relay.pushed_in).map(([k, id]) => `${k} from ${nameOf(id)}`).join(', ') || '–')}</td></tr>
      <tr><th>pulled from here</th><td>${esc(Object.entries(relay.served_pulls).map(([k, ids]) => `${k} by ${ids.map(nameOf).join(', ')}`).join('; ') || '–')}</td></tr>
      <tr><th>routed around</th><td>${esc(relay.routed_around.map(nameOf).join(', ') || '–')}</td></tr></table>` : '<h2>Relay</h2><p class="muted">not a cluster member</p>';
  const target = node.self ? 'self' : name;
  await charts(NODE_CHARTS.map(([id, title, metric]) => [id, (el) => nodeChart(el, title, metric, target)]));
}

async function viewStreams(main) {
  const nodes = members().filter((n) => n.health !== 'down');
  const answers = await Promise.all(nodes.map(async (n) => ({
    node: n,
    streams: (await api(memberPath(n.name, 'streams')).catch(() => ({ streams: [] }))).streams,
    relay: state.standalone ? null : (await api(memberPath(n.name, 'node')).catch(() => null))?.relay,
  })));
  const byKey = new Map();
  for (const { node, streams, relay } of answers) {
    for (const s of streams) {
      const entry = byKey.get(s.key) ?? { key: s.key, media: s.media, bitrate: 0, viewers: [], publisher: null, origin: null, pulls: [] };
      if (s.publisher) entry.media = s.media;
      entry.bitrate = Math.max(entry.bitrate, s.bitrate_bps);
      if (s.viewers > 0) entry.viewers.push(`${node.name}: ${s.viewers}`);
      if (s.publisher && !relay?.pulls.includes(s.key) && !(s.key in (relay?.pushed_in ?? {}))) entry.publisher = node.name;
      if (relay && s.key in relay.pushed_in) {
        entry.origin = node.name;
        entry.publisher = nodes.find((n) => n.id === relay.pushed_in[s.key])?.name ?? entry.publisher;
      }
      if (relay?.pulls.includes(s.key)) entry.pulls.push(node.name);
      byKey.set(s.key, entry);
    }
  }
  const streams = [...byKey.values()].sort((a, b) => a.key.localeCompare(b.key));
  if (!$('#streams-view', main)) {
    main.innerHTML = `<section class="card" id="streams-view"><h2>Streams</h2><div class="scroll" id="stream-table"></div></section>
      <section class="card" id="player-card"><h2>Player</h2>
        <p><select id="play-stream" aria-label="stream"></select> from <select id="play-edge" aria-label="edge"></select>
        <button class="play" id="play">Play</button> <span class="muted" id="player-state"></span></p>
        <video id="video" muted playsinline controls></video></section>
      <section class="card"><h2>History of the chosen stream</h2><div class="charts">
        <div class="chart" id="chart-stream-viewers"></div><div class="chart" id="chart-stream-bitrate"></div></div></section>`;
    $('#play', main).addEventListener('click', play);
    $('#play-stream', main).addEventListener('change', () => { state.chartsAt = 0; refresh(); });
  }
  $('#stream-table', main).innerHTML = streams.length ? `<table><tr><th>stream</th><th>codecs</th><th>bit rate</th><th>viewers per node</th><th>path</th></tr>
    ${streams.map((s) => `<tr data-stream="${esc(s.key)}"><td>${esc(s.key)}</td>
      <td>${esc([s.media?.video_codec, s.media?.width && `${s.media.width}×${s.media.height}`, s.media?.frame_rate && `${s.media.frame_rate} fps`, s.media?.audio_codec].filter(Boolean).join(' · '))}</td>
      <td>${format(s.bitrate, 'bps')}</td><td>${esc(s.viewers.join(', ') || '–')}</td>
      <td>${esc([s.publisher ?? '?', s.origin && s.origin !== s.publisher ? s.origin : null].filter(Boolean).join(' → '))}${s.pulls.length ? ` → ${esc(s.pulls.join(', '))}` : ''}</td></tr>`).join('')}</table>`
    : '<p class="muted">no streams</p>';
  const keep = (sel, options) => {
    const el = $(sel, main), value = el.value;
    el.innerHTML = options.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join('');
    if (options.some(([v]) => v === value)) el.value = value;
  };
  keep('#play-stream', streams.map((s) => [s.key, s.key]));
  keep('#play-edge', nodes.filter((n) => n.roles?.edge !== false).map((n) => [n.public_addr.http, n.name]));
  const chosen = $('#play-stream', main).value;
  if (chosen !== state.chartedStream) { state.chartedStream = chosen; state.chartsAt = 0; }
  if (!chosen) return;
  const stream = ['stream', chosen];
  await charts([
    ['chart-stream-viewers', (el) => clusterChart(el, `${chosen}: viewers`, 'viewers', stream)],
    ['chart-stream-bitrate', (el) => clusterChart(el, `${chosen}: bit rate`, 'bitrate_bps', stream)],
  ]);
}

function play() {
  const key = $('#play-stream').value, edge = $('#play-edge').value;
  if (!key || !edge) return;
  if (state.player) { state.player.destroy(); state.player = null; }
  const video = $('#video');
  if (!window.mpegts?.isSupported()) { $('#player-state').textContent = 'this browser cannot play HTTP-FLV (no Media Source Extensions)'; return; }
  const url = `${location.protocol}//${edge}/${key}.flv`;
  state.player = mpegts.createPlayer({ type: 'flv', isLive: true, url }, { enableStashBuffer: false, liveBufferLatencyChasing: true });
  state.player.attachMediaElement(video);
  state.player.on(mpegts.Events.ERROR, (type, detail) => { $('#player-state').textContent = `error: ${type} ${detail}`; });
  state.player.load();
  video.play().catch(() => {});
  $('#player-state').textContent = `playing ${url}`;
  video.dataset.url = url;
}

// A GeoDNS server's stored series: answers per second for every region, one line each.
async function dnsChart(el, index, regions) {
  const r = RANGES[state.range];
  const series = await Promise.all(regions.map(async (region) => {
    const answer = await api(`/api/v1/dns/history?server=${index}&metric=answers&region=${encodeURIComponent(region)}&range=${r.range}&step=${r.step}`);
    return { name: region, points: answer.points.map((p) => ({ t: p.t, v: p.mean })) };
  }));
  drawChart(el, 'answers per second by region', 'per_s', series);
}

async function dnsQueriesChart(el, index) {
  const r = RANGES[state.range];
  const lines = [['queries', 'answered'], ['unanswered', 'not answered'], ['formerr', 'FORMERR'], ['refused', 'REFUSED']];
  const series = await Promise.all(lines.map(async ([metric, name]) => {
    const answer = await api(`/api/v1/dns/history?server=${index}&metric=${metric}&range=${r.range}&step=${r.step}`);
    return { name, points: answer.points.map((p) => ({ t: p.t, v: p.mean })) };
  }));
  drawChart(el, 'queries per second', 'per_s', series);
}

async function viewDns(main) {
  const answer = await api('/api/v1/dns');
  if (!answer.servers.length) {
    main.innerHTML = '<section class="card"><h2>GeoDNS</h2><p class="muted">No GeoDNS server configured: set <code>dashboard.dns = ["host:port"]</code> (the skein-dns <code>listen.metrics</code> address).</p></section>';
    return;
  }
  const route = (f) => f.route === 'local' ? (f.addrs ?? []).map((a) => `${a.addr} (${(a.weight ?? 0).toFixed(2)})`).join(', ') || 'no address'
    : f.route === 'spill' ? `spill to ${f.to.join(', ')}` : f.route === 'least-bad' ? (f.addrs.length ? `least bad: ${f.addrs.join(', ')}` : 'no address') : 'nothing (NODATA)';
  const layout = answer.servers.map((s) => s.server).join(' ');
  if (main.dataset.dnsLayout !== layout) {
    main.dataset.dnsLayout = layout;
    main.innerHTML = answer.servers.map((s, i) => `<section class="card dns-server" data-server="${esc(s.server)}"><div class="dns-live"></div>
      <div class="charts"><div class="chart" id="chart-dns-${i}-regions"></div><div class="chart" id="chart-dns-${i}-queries"></div></div></section>`).join('');
  }
  const specs = [];
  answer.servers.forEach((s, i) => {
    const rcodes = Object.entries(s.view?.counts?.rcodes ?? {}).filter(([, n]) => n > 0);
    const card = main.querySelectorAll('.dns-server')[i];
    $('.dns-live', card).innerHTML = `<h2>${esc(s.server)} ${s.answered ? '' : '<span class="badge down">no answer</span>'}${s.view?.degraded ? ' <span class="badge down">degraded</span>' : ''}</h2>
    ${s.view ? `<div class="scroll"><table><tr><th>region</th><th>A answered with</th><th>AAAA answered with</th><th>answers in all</th></tr>
      ${s.view.regions.map((r) => `<tr><td>${esc(r.region)}</td><td>${esc(route(r.a))}</td><td>${esc(route(r.aaaa))}</td>
        <td>${s.view.counts?.answers?.[r.region] ?? 0}</td></tr>`).join('')}</table></div>
      <p class="muted">queries by response code: ${rcodes.map(([k, n]) => `${esc(k)} ${n}`).join(' · ') || 'none yet'}</p>
      <h2>Edges as this server sees them</h2><div class="scroll"><table><tr><th>region</th><th>edge</th><th>state</th><th>weight</th><th>utilisation</th><th>probe</th></tr>
      ${s.view.edges.map((e) => `<tr data-edge="${esc(e.edge)}" data-state="${esc(e.state)}"><td>${esc(e.region)}</td><td>${esc(e.edge)}</td><td><span class="badge ${e.state === 'up' ? 'up' : e.state === 'down' ? 'down' : ''}">${esc(e.state)}</span></td>
        <td>${e.weight.toFixed(2)}</td><td>${format(e.utilization, 'ratio')}</td><td>${e.last_probe_ms != null ? `${e.last_probe_ms.toFixed(1)} ms` : '–'}</td></tr>`).join('')}</table></div>` : ''}`;
    const regions = (s.view?.regions ?? []).map((r) => r.region);
    specs.push([`chart-dns-${i}-regions`, (el) => dnsChart(el, i, regions)]);
    specs.push([`chart-dns-${i}-queries`, (el) => dnsQueriesChart(el, i)]);
  });
  await charts(specs);
}

async function viewEvents(main) {
  const answer = await api('/api/v1/events');
  main.innerHTML = `<section class="card"><h2>Events seen by ${esc(answer.node)}</h2><div class="scroll"><table id="events">
    <tr><th>when</th><th>what</th><th></th></tr>
    ${answer.events.map((e) => `<tr data-kind="${esc(e.kind)}"><td>${esc(new Date(e.at_ms).toLocaleString())}</td><td>${esc(e.kind)}</td><td>${esc(e.text)}</td></tr>`).join('') || '<tr><td colspan="3" class="muted">nothing yet</td></tr>'}
  </table></div></section>`;
}

// ---- routing and polling ----

function route() {
  const [view, arg] = (location.hash.slice(1) || 'cluster').split('/');
  return { view, arg: arg ? decodeURIComponent(arg) : '' };
}

// One refresh at a time; one asked for meanwhile (a view change) runs right after.
let busy = false, again = false;
async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  const main = $('#view');
  const { view, arg } = route();
  document.querySelectorAll('nav a').forEach((a) => a.classList.toggle('on', a.dataset.view === view));
  try {
    await loadCluster();
    const views = { cluster: viewCluster, node: (m) => viewNode(m, arg), streams: viewStreams, dns: viewDns, events: viewEvents };
    await (views[view] ?? viewCluster)(main);
    $('#status').textContent = `${state.me.name} · ${new Date().toLocaleTimeString()}`;
    if (route().view === view) document.body.dataset.rendered = view;
  } catch (e) {
    if (e.status === 401) {
      const refused = Boolean(sessionStorage.getItem(TOKEN_KEY));
      sessionStorage.removeItem(TOKEN_KEY);
      askToken(main, refused);
      $('#status').textContent = 'the admin token is needed';
    } else {
      $('#status').textContent = `error: ${e.message}`;
    }
  } finally {
    busy = false;
    if (again) { again = false; refresh(); }
  }
}

document.querySelectorAll('#range button').forEach((b) => b.addEventListener('click', () => {
  state.range = b.dataset.range;
  state.chartsAt = 0;
  document.querySelectorAll('#range button').forEach((o) => o.classList.toggle('on', o === b));
  refresh();
}));
window.addEventListener('hashchange', () => {
  if (state.player) { state.player.destroy(); state.player = null; }
  $('#view').innerHTML = '';
  delete $('#view').dataset.dnsLayout;
  document.body.dataset.rendered = '';
  state.chartsAt = 0;
  refresh();
});
refresh();
setInterval(refresh, 2000);
