/**
 * Operating walbridge as a service: what an operator watches (/metrics, the status page,
 * /status.json, `walbridge status`), and what must not need an operator (SIGTERM on redeploy,
 * a second instance started before the first stops, a restarted source, killed connections).
 * Source PostgreSQL 17, target 15 here. The passwords of both are distinctive, and every
 * byte the run exposes is searched for them at the end.
 */
import { metricValue } from '../helpers/observe.js';
import assert from 'node:assert/strict';
import { after, afterEach, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, addMessages, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, stopLoadCleanly, waitForCatchUp, waitForPhase } from '../helpers/state.js';

const SOURCE_PASSWORD = 'src-Pässwörd-7f3a9c';
const TARGET_PASSWORD = 'tgt-S3cr3t-b21e44';

let source: Cluster;
let target: Cluster;
let load: WriteLoad | null = null;
const daemons: DaemonProcess[] = [];
/** Everything the run exposed: logs of every daemon, pages, metrics, JSON, CLI output. */
const exposed: string[] = [];

before(async () => {
  [source, target] = await Promise.all([
    startCluster({ major: 17, name: 'source', password: SOURCE_PASSWORD }),
    startCluster({ major: 15, name: 'target', password: TARGET_PASSWORD }),
  ]);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
    await addMessages(c, 600_000, 15);
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
});

after(async () => {
  for (const d of daemons) d.kill('SIGKILL');
  await Promise.all([source?.destroy(), target?.destroy()]);
});

// A test that fails while its write load runs must not leave it writing into the next test's
// comparison: one failure would otherwise show as several.
afterEach(async () => {
  const running = load;
  load = null;
  await running?.stop().catch(() => {});
});

const env = () => ({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth', WALBRIDGE_COPY_JOBS: '2' });

async function launch(extra: Record<string, string> = {}): Promise<DaemonProcess> {
  const d = await startDaemon({ ...env(), ...extra });
  daemons.push(d);
  return d;
}

async function http(d: DaemonProcess, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${d.port}${path}`);
  const body = await r.text();
  exposed.push(body);
  return { status: r.status, body };
}

async function statusJson(d: DaemonProcess): Promise<{ phase: string; tables: { table: string; state: string; rowsCopied: number }[]; lagBytes: number | null }> {
  return JSON.parse((await http(d, '/status.json')).body) as never;
}

async function cli(args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await runCli(args, env());
  exposed.push(r.out);
  return r;
}

test('progress is visible while copying: status page, /status.json, walbridge status, /readyz', { timeout: 120_000 }, async () => {
  // The copy must last while the page, then the CLI (a process per look, and the progress the
  // daemon records every 2 s), are read: capped so that public.messages takes about 20 s over
  // its two jobs, however fast the machine is at the moment.
  const [{ mb } = { mb: 0 }] = await source.query<{ mb: number }>(`SELECT pg_relation_size('public.messages') / 1e6 AS mb`);
  const d = await launch({ WALBRIDGE_COPY_MAX_MBPS: Math.max(0.5, mb / 2 / 20).toFixed(1) });
  let copying: { table: string; rowsCopied: number } | undefined;
  await waitFor(
    async () => {
      const s = await statusJson(d);
      copying = s.tables.find((t) => t.state === 'copying' && t.rowsCopied > 0);
      return s.phase === 'backfill' && copying !== undefined;
    },
    { what: 'a copy in progress on /status.json', timeoutMs: 60_000, intervalMs: 20 },
  );
  assert.equal((await http(d, '/readyz')).status, 200, 'ready while copying');
  const page = await http(d, '/');
  assert.equal(page.status, 200);
  assert.match(page.body, /<title>walbridge<\/title>/);
  assert.match(page.body, /status\.json/, 'the page reads the live status');
  // The CLI reads what the daemon records on the target (copy progress every 2 s).
  await waitFor(
    async () => {
      const { code, out } = await cli(['status', '--json']);
      if (code !== 0) return false;
      const s = JSON.parse(out) as { recordedPhase: string; tables: { state: string; rowsCopied: number }[]; daemon: { phase: string } | null };
      return s.recordedPhase === 'backfill' && s.daemon?.phase === 'backfill' && s.tables.some((t) => t.state === 'copying' && t.rowsCopied > 0);
    },
    { what: 'walbridge status --json to show a copy in progress', timeoutMs: 30_000, intervalMs: 200 },
  );
});

test('metrics after the copy: rows copied equal the table sizes, phase streaming, lag back to 0', { timeout: 120_000 }, async () => {
  const d = daemons[0] as DaemonProcess;
  await waitForPhase(target, 'streaming', { daemon: d });
  // The phase is recorded on the target before the daemon's stream starts: on a slow machine
  // that takes over a second, and the metric follows the daemon's own phase.
  await waitFor(async () => (await statusJson(d)).phase === 'streaming', { what: 'the daemon to stream', timeoutMs: 30_000 });
  load = startWriteLoad(source.url(), { ratePerSec: 60, truncateEvery: 100, seed: 3 });
  await load.waitFor((s) => s.transactions >= 60, 30_000);
  // The monitor samples the slot every 2 s: the gauge follows the stream's start by up to that.
  await waitFor(async () => metricValue((await http(d, '/metrics')).body, 'walbridge_slot_active') === 1, { what: 'the monitor to see the slot active', timeoutMs: 30_000 });
  const { body } = await http(d, '/metrics');
  for (const name of [
    'walbridge_phase',
    'walbridge_backfill_rows_total',
    'walbridge_backfill_bytes_total',
    'walbridge_backfill_rows_estimated',
    'walbridge_backfill_tables',
    'walbridge_apply_transactions_total',
    'walbridge_apply_changes_total',
    'walbridge_replication_lag_bytes',
    'walbridge_replication_lag_seconds',
    'walbridge_source_retained_wal_bytes',
    'walbridge_slot_active',
    'walbridge_errors_total',
    'process_resident_memory_bytes',
  ]) {
    assert.match(body, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
  }
  assert.equal(metricValue(body, 'walbridge_phase', { phase: 'streaming' }), 1);
  assert.equal(metricValue(body, 'walbridge_phase', { phase: 'backfill' }), 0);
  assert.equal(metricValue(body, 'walbridge_backfill_tables', { state: 'copied' }), APP_TABLES.length);
  assert.equal(metricValue(body, 'walbridge_slot_active'), 1);
  // Rows copied per table, as counted on the wire, equal what the copy committed.
  const recorded = await target.query<{ t: string; n: string }>(`SELECT schema_name || '.' || table_name AS t, rows_copied::text AS n FROM walbridge.tables`);
  for (const r of recorded) assert.equal(metricValue(body, 'walbridge_backfill_rows_total', { table: r.t }), Number(r.n), r.t);
  const messages = recorded.find((r) => r.t === 'public.messages');
  assert.ok(Number(messages?.n) > 600_000);

  const running = load;
  load = null;
  await stopLoadCleanly(running, source);
  await waitFor(
    async () => {
      const m = (await http(d, '/metrics')).body;
      return metricValue(m, 'walbridge_replication_lag_bytes') === 0 && metricValue(m, 'walbridge_replication_lag_seconds') === 0 && (metricValue(m, 'walbridge_apply_transactions_total') ?? 0) > 0;
    },
    { what: 'lag to return to 0 once the app stops writing', timeoutMs: 30_000, intervalMs: 200 },
  );
  const m = (await http(d, '/metrics')).body;
  assert.ok((metricValue(m, 'walbridge_apply_changes_total', { table: 'public.messages', op: 'insert' }) ?? 0) > 0);
  const text = await cli(['status']);
  assert.equal(text.code, 0);
  assert.match(text.out, /phase:\s+streaming/);
  assert.match(text.out, /public\.messages\s+copied/);
});

test('SIGTERM while streaming under writes: exits 0 within 10 s; after a restart nothing is lost or doubled', { timeout: 120_000 }, async () => {
  const d = daemons[0] as DaemonProcess;
  load = startWriteLoad(source.url(), { ratePerSec: 80, seed: 4 });
  await load.waitFor((s) => s.transactions >= 100, 30_000);
  const t0 = Date.now();
  d.kill('SIGTERM');
  const { code } = await d.exited;
  assert.equal(code, 0);
  assert.ok(Date.now() - t0 < 10_000, `stopped in ${Date.now() - t0} ms`);
  const seen = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen + 100, 30_000);
  await launch();
  const seen2 = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen2 + 100, 30_000);
  await load.stop();
  load = null;
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), APP_TABLES);
});

test('a second instance stands by while the first runs, and takes over when it dies', { timeout: 180_000 }, async () => {
  const first = daemons[1] as DaemonProcess;
  load = startWriteLoad(source.url(), { ratePerSec: 60, seed: 5 });
  const second = await launch();
  await waitFor(async () => (await statusJson(second)).phase === 'standby', { what: 'the second instance to stand by', timeoutMs: 30_000 });
  assert.equal((await http(second, '/readyz')).status, 503, 'a standby instance is not ready');
  assert.equal(metricValue((await http(second, '/metrics')).body, 'walbridge_phase', { phase: 'standby' }), 1);
  assert.equal((await http(first, '/readyz')).status, 200);
  await load.waitFor((s) => s.transactions >= 100, 30_000);
  assert.equal((await statusJson(second)).phase, 'standby', 'still standing by while the first streams');

  first.kill('SIGKILL');
  await first.exited;
  await waitFor(async () => (await statusJson(second)).phase === 'streaming', { what: 'the second instance to take over', timeoutMs: 60_000 });
  const seen = load.stats.transactions;
  await load.waitFor((s) => s.transactions >= seen + 100, 30_000);
  await load.stop();
  load = null;
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), APP_TABLES);
});

test('a restarted source and terminated connections on both sides are survived', { timeout: 240_000 }, async (t) => {
  const d = daemons[2] as DaemonProcess;
  load = startWriteLoad(source.url(), { ratePerSec: 60, seed: 6 });
  const progress = async (what: string) => {
    const t0 = Date.now();
    const before = (await pipelineRow(target))?.applied_lsn;
    await waitFor(
      async () => {
        const rows = await target.query<{ moved: boolean }>(`SELECT applied_lsn > $1::pg_lsn AS moved FROM walbridge.pipeline`, [before]);
        return rows[0]?.moved === true;
      },
      { what: `applying to resume after ${what}`, timeoutMs: 90_000, intervalMs: 100 },
    );
    t.diagnostic(`applying resumed ${Date.now() - t0} ms after ${what}`);
  };
  await source.restart('fast');
  await progress('a fast restart of the source');
  await source.restart('immediate');
  await progress('an immediate restart (crash) of the source');
  await source.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'walbridge%' AND pid <> pg_backend_pid()`);
  await progress("termination of walbridge's source connections, walsender included");
  await target.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE 'walbridge%' AND pid <> pg_backend_pid()`);
  await progress("termination of walbridge's target connections");
  await target.restart('immediate');
  await progress('an immediate restart of the target');
  const stats = await load.stop();
  load = null;
  assert.ok(stats.transactions > 0);
  await waitForCatchUp(source, target);
  await assertSameContent(source.url(), target.url(), APP_TABLES);
  assert.equal((await statusJson(d)).phase, 'streaming');
  const { code } = await d.stop();
  assert.equal(code, 0);
});

test('no password appears in any log line, page, metric or CLI output of the run', () => {
  const everything = [...daemons.flatMap((d) => d.output), ...exposed].join('\n');
  assert.ok(everything.length > 10_000, 'the run produced output to search');
  for (const pw of [SOURCE_PASSWORD, TARGET_PASSWORD, encodeURIComponent(SOURCE_PASSWORD)]) {
    assert.equal(everything.includes(pw), false, `a password leaked: ${pw}`);
  }
});
