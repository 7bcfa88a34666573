/**
 * The table set of a running migration changes while the app writes (source 15 → target 17):
 * a table left out at the start is added (and walbridge is SIGKILLed during its copy), another
 * is removed, one is copied again while the others stream, a table created on the source is
 * followed (WALBRIDGE_FOLLOW_NEW_TABLES), and a restart with another WALBRIDGE_EXCLUDE_TABLES
 * removes one more. At the end every migrated table is equal on both sides, row by row, and the
 * removed ones kept their rows.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, addMessages, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { metricValue } from '../helpers/observe.js';
import { errorsOf, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { stopLoadCleanly, waitForCatchUp, waitForPhase } from '../helpers/state.js';
import { readFences } from '../../src/state/fences.js';

let source: Cluster;
let target: Cluster;
let load: WriteLoad | null = null;
let daemon: DaemonProcess | null = null;
let exclude = 'public.messages';
/** When a row written to another table during the added table's copy reached the target. */
let streamedDuringCopyAt: Date | null = null;
const removedCounts = new Map<string, number>();

before(async () => {
  [source, target] = await Promise.all([startCluster({ major: 15, name: 'source' }), startCluster({ major: 17, name: 'target' })]);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
    // Enough rows that the added table's copy (throttled below) lasts seconds: a kill lands in it.
    await addMessages(c, 250_000, 12);
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
});

after(async () => {
  // DEBUG_DAEMON_LOG=file keeps every daemon's output of the run, to read after a failure.
  if (process.env.DEBUG_DAEMON_LOG) (await import('node:fs')).writeFileSync(process.env.DEBUG_DAEMON_LOG, all.map((d) => d.output.join('\n')).join('\n=====\n'));
  daemon?.kill('SIGKILL');
  await load?.stop().catch(() => {});
  await Promise.all([source?.destroy(), target?.destroy()]);
});

const env = () => ({
  SOURCE_DATABASE_URL: source.url(),
  TARGET_DATABASE_URL: target.url(),
  WALBRIDGE_SCHEMAS: 'public,auth',
  WALBRIDGE_EXCLUDE_TABLES: exclude,
  WALBRIDGE_FOLLOW_NEW_TABLES: 'true',
  WALBRIDGE_COPY_JOBS: '2',
  WALBRIDGE_COPY_MAX_MBPS: '1',
});

const all: DaemonProcess[] = [];
async function launch(): Promise<DaemonProcess> {
  daemon = await startDaemon(env());
  all.push(daemon);
  return daemon;
}

async function cli(args: string[]): Promise<{ code: number | null; out: string; stdout: string }> {
  return runCli(args, env());
}

interface Row {
  t: string;
  state: string;
  holding: boolean;
  request: string | null;
  rows_copied: string;
  copy_finished_at: Date | null;
}
async function tableRow(name: string): Promise<Row | undefined> {
  const rows = await target.query<Row>(
    `SELECT schema_name || '.' || table_name AS t, state, holding, request, rows_copied::text, copy_finished_at FROM walbridge.tables WHERE schema_name || '.' || table_name = $1`,
    [name],
  );
  return rows[0];
}
const streaming = (r: Row | undefined) => r !== undefined && r.state === 'copied' && !r.holding && r.request === null;

async function published(): Promise<string[]> {
  const rows = await source.query<{ t: string }>(`SELECT schemaname || '.' || tablename AS t FROM pg_publication_tables WHERE pubname = 'walbridge'`);
  return rows.map((r) => r.t);
}

async function count(c: Cluster, table: string): Promise<number> {
  const [schema, name] = table.split('.') as [string, string];
  const rows = await c.query<{ n: string }>(`SELECT count(*)::text AS n FROM "${schema}"."${name}"`);
  return Number(rows[0]?.n);
}

test('a table left out at the start is added while the others stream, and a SIGKILL during its copy resumes it', { timeout: 240_000 }, async () => {
  const d = await launch();
  await waitForPhase(target, 'streaming', { daemon: d });
  assert.ok(!(await published()).includes('public.messages'), 'left out at the start');
  load = startWriteLoad(source.url(), { ratePerSec: 40, truncateEvery: 150, seed: 16 });
  await load.waitFor((s) => s.transactions >= 40, 30_000);

  const asked = await cli(['tables', 'add', 'public.mess*']);
  assert.equal(asked.code, 0, asked.out);
  assert.match(asked.out, /public\.messages: to be added/);
  // Its copy runs; the others keep streaming meanwhile (a row written now reaches the target).
  await waitFor(async () => (await tableRow('public.messages'))?.state === 'copying' && Number((await tableRow('public.messages'))?.rows_copied) > 0, {
    what: 'the copy of public.messages to make progress',
    timeoutMs: 60_000,
    intervalMs: 100,
  });
  assert.ok((await published()).includes('public.messages'), 'published before its snapshot');
  await source.query(`INSERT INTO public.products (sku, title, price, created_at) VALUES ('during-copy', 'streamed while messages copies', 1, now())`);
  await waitFor(async () => (await target.query(`SELECT 1 FROM public.products WHERE sku = 'during-copy'`)).length === 1, { what: 'a row to stream during the copy', timeoutMs: 30_000 });
  streamedDuringCopyAt = new Date();
  const list = await cli(['tables']);
  assert.match(list.stdout, /public\.messages\s+copying \(changes held meanwhile\)/);

  d.kill('SIGKILL');
  await d.exited;
  const again = await launch();
  await waitFor(async () => streaming(await tableRow('public.messages')), { what: 'public.messages to stream after the restart', timeoutMs: 180_000, intervalMs: 200 });
  const row = (await tableRow('public.messages')) as Row;
  assert.ok(row.copy_finished_at && streamedDuringCopyAt < row.copy_finished_at, 'the other tables streamed while it was copied');
  assert.deepEqual(again.logs().filter((l) => l.level === 'fatal'), [], errorsOf(again));
  const held = await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM walbridge.held_changes`);
  assert.equal(held[0]?.n, '0', 'every held change applied');
});

test('a table is removed: no longer applied nor published, its rows stay on the target', { timeout: 120_000 }, async () => {
  const r = await cli(['tables', 'remove', 'public.llm_usage', '--wait']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /public\.llm_usage: removed/);
  assert.ok(!(await published()).includes('public.llm_usage'));
  removedCounts.set('public.llm_usage', await count(target, 'public.llm_usage'));
  assert.ok((removedCounts.get('public.llm_usage') ?? 0) > 0, 'its rows stay');
  // Unknown names are refused, naming the fix.
  const bad = await cli(['tables', 'remove', 'public.nope']);
  assert.equal(bad.code, 2);
  assert.match(bad.out, /public\.nope: no table of this migration matches/);
  assert.match(bad.out, /walbridge tables" lists them/);
});

test('resync copies one table again while the others stream; its content is equal after', { timeout: 180_000 }, async () => {
  // The target's orders diverged (verify would say so): rows lost there.
  await target.withClient(async (c) => {
    await c.query('SET session_replication_role = replica');
    await c.query(`DELETE FROM public.orders WHERE id IN (SELECT id FROM public.orders ORDER BY id LIMIT 5)`);
  });
  const r = await cli(['resync', 'public.orders', '--wait']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /public\.orders: to be copied again/);
  assert.match(r.out, /public\.orders: streaming/);
  const other = await tableRow('public.messages');
  assert.ok(streaming(other), 'the others untouched');
});

test('a resync SIGKILLed once its changes are held, and again once its copy is in, resumes and ends equal', { timeout: 180_000 }, async () => {
  const first = daemon as DaemonProcess;
  const asked = await cli(['resync', 'public.users']);
  assert.equal(asked.code, 0, asked.out);
  await first.waitForLog((l) => l.msg?.startsWith('resync: its changes are held') === true && l.table === 'public.users', 'the resync to start holding', 30_000);
  first.kill('SIGKILL');
  await first.exited;
  const second = await launch();
  await second.waitForLog((l) => l.msg === 'copy finished' && l.table === 'public.users', 'the copy of public.users again', 60_000);
  second.kill('SIGKILL');
  await second.exited;
  await launch();
  await waitFor(async () => streaming(await tableRow('public.users')), { what: 'public.users to stream again', timeoutMs: 90_000, intervalMs: 200 });
  // Its content is checked with every other table at the end, under the same load.
});

test('a table created on the source is reported with its DDL, and followed once it exists on the target', { timeout: 180_000 }, async () => {
  await source.query(`CREATE TABLE public.coupons (id bigint PRIMARY KEY, code text NOT NULL, used_at timestamptz)`);
  await source.query(`INSERT INTO public.coupons SELECT g, 'C' || g, CASE WHEN g % 3 = 0 THEN now() END FROM generate_series(1, 500) g`);
  let listed = '';
  await waitFor(
    async () => {
      const r = await cli(['tables', '--json']);
      listed = r.out;
      const j = JSON.parse(r.stdout) as { newTables: { table: string }[]; ddl: string[] };
      return j.newTables.some((t) => t.table === 'public.coupons') && j.ddl.some((s) => /CREATE TABLE "public"\."coupons"/.test(s));
    },
    { what: 'walbridge tables to report public.coupons with its DDL', timeoutMs: 30_000, intervalMs: 500 },
  ).catch((err: unknown) => {
    throw new Error(`${String(err)}; walbridge tables --json said:\n${listed}`);
  });
  const d = daemon as DaemonProcess;
  await waitFor(async () => {
    const s = JSON.parse((await (await fetch(`http://127.0.0.1:${d.port}/status.json`)).text())) as { newTables: { table: string; reason: string }[] };
    return s.newTables.some((t) => t.table === 'public.coupons' && /waiting to be followed/.test(t.reason));
  }, { what: 'the status to report the new table', timeoutMs: 30_000, intervalMs: 500 });
  // A cutover now would leave its rows behind: refused, before anything is installed on the source.
  const refused = await cli(['cutover']);
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /table\(s\) of WALBRIDGE_SCHEMAS on the old database are not migrated: public\.coupons\. Created after the migration began, a cutover now would leave their rows/);
  assert.match(refused.out, /Carry them: walbridge schema .*then walbridge tables add public\.coupons --wait.*Or leave them behind on purpose: add them to WALBRIDGE_EXCLUDE_TABLES/);
  assert.deepEqual(await source.withClient((c) => readFences(c)), [], 'no fence on the source');
  assert.deepEqual(await target.query('SELECT cutover_requested_at FROM walbridge.pipeline'), [{ cutover_requested_at: null }], 'no cutover recorded as under way');
  // walbridge schema makes it on the target (the selection matches it); the daemon follows it.
  const made = await cli(['schema']);
  assert.equal(made.code, 0, made.out);
  await waitFor(async () => streaming(await tableRow('public.coupons')), { what: 'public.coupons to be followed', timeoutMs: 90_000, intervalMs: 200 });
  await source.query(`UPDATE public.coupons SET used_at = now() WHERE id <= 50`);
  await source.query(`INSERT INTO public.coupons SELECT g, 'D' || g, NULL FROM generate_series(501, 600) g`);
});

test('a restart with another WALBRIDGE_EXCLUDE_TABLES removes what it leaves out', { timeout: 120_000 }, async () => {
  await (daemon as DaemonProcess).stop();
  exclude = 'public.llm_usage,public.webhook_dedupe';
  const d = await launch();
  await d.waitForLog((l) => /table selection changed/.test(l.msg ?? ''), 'the restart to name the selection change', 60_000);
  await waitFor(async () => (await tableRow('public.webhook_dedupe'))?.state === 'removed', { what: 'public.webhook_dedupe removed', timeoutMs: 60_000, intervalMs: 200 });
  assert.ok(streaming(await tableRow('public.messages')), 'the table added by command stays');
  assert.ok(streaming(await tableRow('public.coupons')), 'the followed table stays');
  removedCounts.set('public.webhook_dedupe', await count(target, 'public.webhook_dedupe'));
});

test('at the end every migrated table is equal on both sides, and the removed ones kept their rows', { timeout: 180_000 }, async () => {
  const running = load as WriteLoad;
  load = null;
  await stopLoadCleanly(running, source);
  await waitForCatchUp(source, target);
  const migrated = [...APP_TABLES.filter((t) => !removedCounts.has(t)), 'public.coupons'];
  await assertSameContent(source.url(), target.url(), migrated);
  for (const [t, n] of removedCounts) assert.equal(await count(target, t), n, `${t} kept its rows and was not applied any more`);
  const d = daemon as DaemonProcess;
  const metrics = await (await fetch(`http://127.0.0.1:${d.port}/metrics`)).text();
  assert.equal(metricValue(metrics, 'walbridge_tables', { state: 'removed' }), 2);
  assert.equal(metricValue(metrics, 'walbridge_tables', { state: 'holding' }), 0);
  const status = await cli(['status']);
  assert.match(status.stdout, /2 removed/);
  // verify compares the migrated tables only, and finds them equal.
  const v = await cli(['verify']);
  assert.equal(v.code, 0, v.out);
});
