/**
 * The status page: one self-contained HTML document that polls /status.json. No external
 * assets (the service may run on a private network), no secrets, no data rows.
 */
export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>walbridge</title>
<style>
  :root { --bg:#0f1419; --panel:#172029; --ink:#e6edf3; --dim:#8b98a5; --ok:#3fb950; --warn:#d29922; --bad:#f85149; --bar:#2f81f7; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.45 system-ui, -apple-system, Segoe UI, sans-serif; background: var(--bg); color: var(--ink); }
  main { max-width: 980px; margin: 0 auto; padding: 24px 16px 48px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .sub { color: var(--dim); margin-bottom: 18px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(180px, 1fr)); gap: 12px; margin-bottom: 18px; }
  .card { background: var(--panel); border-radius: 8px; padding: 12px 14px; }
  .card .k { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
  .card .v { font-size: 22px; font-weight: 600; margin-top: 2px; }
  .phase-streaming, .phase-done { color: var(--ok); } .phase-backfill, .phase-preflight, .phase-cutover { color: var(--bar); }
  .phase-standby { color: var(--warn); } .phase-error { color: var(--bad); }
  table { width: 100%; border-collapse: collapse; background: var(--panel); border-radius: 8px; overflow: hidden; }
  th, td { text-align: left; padding: 7px 10px; border-bottom: 1px solid #0f1419; white-space: nowrap; }
  th { color: var(--dim); font-weight: 500; font-size: 12px; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { position: relative; height: 10px; width: 180px; background: #0f1419; border-radius: 5px; overflow: hidden; }
  .bar > span { position: absolute; inset: 0 auto 0 0; background: var(--bar); border-radius: 5px; transition: width .6s; }
  .bar.done > span { background: var(--ok); }
  .charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); gap: 12px; margin-bottom: 18px; }
  .chart { background: var(--panel); border-radius: 8px; padding: 10px 14px; }
  .chart .k { color: var(--dim); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; display: flex; justify-content: space-between; }
  .chart svg { width: 100%; height: 70px; display: block; margin-top: 6px; }
  .chart polyline { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
  .error { background: #2d1417; border: 1px solid var(--bad); border-radius: 8px; padding: 12px 14px; margin-bottom: 18px; white-space: pre-wrap; }
  .error b { color: var(--bad); }
  .error.resolved { background: var(--panel); border-color: #30363d; color: var(--dim); }
  .error.resolved b { color: var(--dim); }
  .fence { background: #2b2410; border: 1px solid var(--warn); border-radius: 8px; padding: 12px 14px; margin-bottom: 18px; white-space: pre-wrap; }
  .fence b { color: var(--warn); }
  .hidden { display: none; }
  footer { color: var(--dim); font-size: 12px; margin-top: 16px; }
</style>
</head>
<body>
<main>
  <h1>walbridge</h1>
  <div class="sub">live migration: copy, then change stream until cutover · <span id="updated">loading…</span></div>
  <div class="cards">
    <div class="card"><div class="k">phase</div><div class="v" id="phase">…</div></div>
    <div class="card"><div class="k">tables copied</div><div class="v" id="tables">…</div></div>
    <div class="card"><div class="k">replication lag</div><div class="v" id="lag">…</div></div>
    <div class="card"><div class="k">WAL held on source</div><div class="v" id="wal">…</div></div>
  </div>
  <div class="charts">
    <div class="chart"><div class="k"><span>replication lag (last 5 min)</span><span id="lagNow"></span></div>
      <svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="lagLine" stroke="#d29922" points=""/></svg></div>
    <div class="chart"><div class="k"><span>changes applied per second</span><span id="rateNow"></span></div>
      <svg viewBox="0 0 300 70" preserveAspectRatio="none"><polyline id="rateLine" stroke="#3fb950" points=""/></svg></div>
  </div>
  <div id="fence" class="fence hidden"></div>
  <div id="error" class="error hidden"></div>
  <div id="newTables" class="fence hidden"></div>
  <table>
    <thead><tr><th>table</th><th>state</th><th>progress</th><th class="num">rows</th><th class="num">rows/s</th><th class="num">ETA</th></tr></thead>
    <tbody id="rows"></tbody>
  </table>
  <footer>Refreshes every 2 s. Metrics for Prometheus at <a href="metrics" style="color:inherit">/metrics</a>.</footer>
</main>
<script>
const $ = (id) => document.getElementById(id);
const token = new URLSearchParams(location.search).get('token');
const bytes = (n) => { if (n == null) return '–'; const u = ['B','kB','MB','GB','TB']; let i = 0; while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; } return n.toFixed(i ? 1 : 0) + ' ' + u[i]; };
const dur = (s) => s == null ? '' : s < 60 ? Math.round(s) + 's' : s < 3600 ? Math.floor(s / 60) + 'm ' + Math.round(s % 60) + 's' : Math.floor(s / 3600) + 'h ' + Math.floor(s % 3600 / 60) + 'm';
const history = []; // { t, lag, changes }
function line(id, values) {
  const max = Math.max(1, ...values);
  const n = values.length;
  $(id).setAttribute('points', values.map((v, i) => (n < 2 ? 0 : (300 * i) / (n - 1)).toFixed(1) + ',' + (68 - (66 * v) / max).toFixed(1)).join(' '));
}
function chart(s) {
  history.push({ t: Date.now(), lag: s.lagBytes || 0, changes: s.applied ? s.applied.changes : null });
  while (history.length && history[0].t < Date.now() - 300000) history.shift();
  const rates = history.map((h, i) => {
    const p = history[i - 1];
    return p && h.changes != null && p.changes != null && h.t > p.t ? Math.max(0, (h.changes - p.changes) / ((h.t - p.t) / 1000)) : 0;
  });
  line('lagLine', history.map((h) => h.lag));
  line('rateLine', rates);
  $('lagNow').textContent = bytes(s.lagBytes);
  $('rateNow').textContent = Math.round(rates[rates.length - 1] || 0).toLocaleString() + ' /s';
}
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
async function refresh() {
  try {
    const r = await fetch('status.json' + (token ? '?token=' + encodeURIComponent(token) : ''), { cache: 'no-store' });
    const s = await r.json();
    $('phase').textContent = s.phase; $('phase').className = 'v phase-' + s.phase;
    $('tables').textContent = s.totals.copied + ' / ' + s.totals.tables;
    $('lag').textContent = s.lagBytes == null ? '–' : bytes(s.lagBytes) + (s.lagSeconds ? ' · ' + s.lagSeconds + ' s' : '');
    $('wal').textContent = s.slot && s.slot.exists ? bytes(s.slot.retainedWalBytes) + (s.slot.active ? '' : ' (inactive)') : '–';
    const fences = s.fences || [];
    $('fence').className = fences.length || s.interruptedCutover ? 'fence' : 'fence hidden';
    $('fence').innerHTML = fences.map((f) => '<b>fence</b> on the ' + esc(f.database) + ': writes to ' + f.tables + ' table(s) are refused there since ' + esc(f.since) +
      ' (' + (f.direction === 'forward' ? 'cutover' : 'rollback') + ' of ' + esc(f.migration) + ')').join('\\n') + (s.interruptedCutover ? '\\n\\n' + esc(s.interruptedCutover) : '');
    const e = s.lastError;
    $('error').className = e ? 'error' + (e.resolvedAt ? ' resolved' : '') : 'error hidden';
    if (e) $('error').innerHTML = '<b>' + esc(e.kind) + ' error</b> at ' + esc(e.at) + (e.resolvedAt ? ' (resolved at ' + esc(e.resolvedAt) + ')' : '') + '\\n' + esc(e.message) + (e.hint ? '\\n\\nFix: ' + esc(e.hint) : '');
    const fresh = s.newTables || [];
    $('newTables').className = fresh.length ? 'fence' : 'fence hidden';
    $('newTables').innerHTML = fresh.map((n) => '<b>new table</b> on the source: ' + esc(n.table) + ', ' + esc(n.reason)).join('\\n');
    const converted = (t) => Object.entries(t.conversions || {}).map(([c, k]) => '<br><small>' + esc(c) + ': ' + esc(k) + '</small>').join('');
    $('rows').innerHTML = s.tables.map((t) => '<tr data-table="' + esc(t.table) + '"><td>' + esc(t.table) + converted(t) + '</td><td>' + esc(t.stage) + (t.held ? ' (' + t.held.toLocaleString() + ' held)' : '') + '</td>' +
      '<td><div class="bar' + (t.state === 'copied' ? ' done' : '') + '"><span style="width:' + (t.percent || 0) + '%"></span></div></td>' +
      '<td class="num">' + t.rowsCopied.toLocaleString() + (t.state === 'copying' && t.rowsEstimated ? ' / ' + t.rowsEstimated.toLocaleString() : '') + '</td>' +
      '<td class="num">' + (t.state === 'copying' && t.rowsPerSecond ? t.rowsPerSecond.toLocaleString() : '') + '</td>' +
      '<td class="num">' + dur(t.etaSeconds) + '</td></tr>').join('');
    chart(s);
    $('updated').textContent = 'updated ' + new Date(s.generatedAt).toLocaleTimeString();
  } catch (err) {
    $('updated').textContent = 'cannot reach walbridge (' + err + ')';
  }
}
refresh(); setInterval(refresh, 2000);
</script>
</body>
</html>
`;
