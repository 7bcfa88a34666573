/**
 * Table groups: two walbridge services migrate one source into one target side by side (source
 * 15 → target 17), each with its own slot, publication and state (WALBRIDGE_GROUP): the hot
 * table `messages` in a group of its own, every other table in a second. With the app writing
 * throughout, both copy and stream at once; a table of one group cannot be added to, nor be
 * reported as new by, the other; one group alone is not cut over; `cutover --all-groups` raises
 * every group's fence before it records any, and afterwards every table is equal on both sides,
 * row by row, whatever the app committed before the fences.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let load: WriteLoad | null = null;
const daemons: DaemonProcess[] = [];

before(async () => {
  [source, target] = await Promise.all([startCluster({ major: 15, name: 'source' }), startCluster({ major: 17, name: 'target' })]);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
});

after(async () => {
  for (const d of daemons) d.kill('SIGKILL');
  await load?.stop().catch(() => {});
  await Promise.all([source?.destroy(), target?.destroy()]);
});

const GROUPS = {
  hot: { WALBRIDGE_TABLES: 'public.messages' },
  rest: { WALBRIDGE_EXCLUDE_TABLES: 'public.messages' },
} as const;

const env = (group: keyof typeof GROUPS): Record<string, string> => ({
  SOURCE_DATABASE_URL: source.url(),
  TARGET_DATABASE_URL: target.url(),
  WALBRIDGE_SCHEMAS: 'public,auth',
  WALBRIDGE_GROUP: group,
  WALBRIDGE_COPY_JOBS: '2',
  ...GROUPS[group],
});

test('two table groups copy and stream into one target side by side, each with its own slot, publication and state', { timeout: 180_000 }, async () => {
  load = startWriteLoad(source.url(), { ratePerSec: 40, truncateEvery: 150, seed: 21 });
  await load.waitFor((s) => s.transactions >= 20, 30_000);
  const [hot, rest] = await Promise.all([startDaemon(env('hot')), startDaemon(env('rest'))]);
  daemons.push(hot, rest);
  await Promise.all([
    waitForPhase(target, 'streaming', { daemon: hot, stateSchema: 'walbridge_hot' }),
    waitForPhase(target, 'streaming', { daemon: rest, stateSchema: 'walbridge_rest' }),
  ]);
  const slots = await source.query<{ slot_name: string }>(`SELECT slot_name FROM pg_replication_slots WHERE NOT temporary ORDER BY 1`);
  assert.deepEqual(slots.map((s) => s.slot_name), ['walbridge_hot', 'walbridge_rest']);
  const published = await source.query<{ pubname: string; n: string }>(`SELECT pubname, count(*)::text AS n FROM pg_publication_tables WHERE pubname LIKE 'walbridge%' GROUP BY 1 ORDER BY 1`);
  assert.deepEqual(published, [
    { pubname: 'walbridge_hot', n: '1' },
    { pubname: 'walbridge_rest', n: String(APP_TABLES.length - 1) },
  ]);
  const states = await target.query<{ schema: string; n: string }>(
    `SELECT 'walbridge_hot' AS schema, count(*)::text AS n FROM walbridge_hot.tables UNION ALL SELECT 'walbridge_rest', count(*)::text FROM walbridge_rest.tables`,
  );
  assert.deepEqual(states, [
    { schema: 'walbridge_hot', n: '1' },
    { schema: 'walbridge_rest', n: String(APP_TABLES.length - 1) },
  ]);
  await load.waitFor((s) => s.transactions >= 200, 60_000);
});

test("a table of one group is neither added to nor reported as new by the other", { timeout: 60_000 }, async () => {
  const refused = await runCli(['tables', 'add', 'public.messages'], env('rest'));
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.out, /public\.messages is migrated by group hot on this target/);
  const listed = await runCli(['tables', '--json'], env('rest'));
  assert.equal(listed.code, 0, listed.out);
  const j = JSON.parse(listed.stdout) as { tables: { table: string }[]; newTables: { table: string }[] };
  assert.equal(j.tables.length, APP_TABLES.length - 1);
  assert.deepEqual(j.newTables, [], "the other group's table is not new");
  // A third service selecting a table of a group is stopped by its preflight, naming the group.
  const third = await runCli(['preflight'], { ...env('rest'), WALBRIDGE_GROUP: 'third', WALBRIDGE_EXCLUDE_TABLES: '' , WALBRIDGE_TABLES: 'public.orders' });
  assert.equal(third.code, 1, third.out);
  assert.match(third.out, /public\.orders is migrated by group rest on this target/);
});

test('one group is not cut over alone: the app would lose writes to its tables meanwhile', { timeout: 60_000 }, async () => {
  const r = await runCli(['cutover'], env('hot'));
  assert.notEqual(r.code, 0, r.out);
  assert.match(r.out, /this target holds other table groups \(group rest\)/);
  assert.match(r.out, /walbridge cutover --all-groups/);
  const [{ made } = { made: false }] = await source.query<{ made: boolean }>(`SELECT to_regclass('walbridge_fence.fences') IS NOT NULL AS made`);
  const raised = made ? await source.query(`SELECT migration FROM walbridge_fence.fences`) : [];
  assert.deepEqual(raised, [], 'no fence was raised');
});

test('cutover --all-groups cuts both groups over together while the app writes: nothing committed is lost', { timeout: 240_000 }, async () => {
  const r = await runCli(['cutover', '--all-groups', '--timeout', '60'], env('rest'));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /\[rest\] 3\/7 fencing the source/);
  assert.match(r.out, /\[hot\] 3\/7 fencing the source/);
  // Every fence went up before any cutover was recorded.
  assert.ok(r.out.lastIndexOf('3/7 fencing') < r.out.indexOf('7/7 recording'), r.out);
  assert.match(r.out, /Cutover done/);
  for (const s of ['walbridge_hot', 'walbridge_rest']) {
    const [p] = await target.query<{ phase: string }>(`SELECT phase FROM ${s}.pipeline`);
    assert.equal(p?.phase, 'done', s);
  }
  const slots = await source.query<{ slot_name: string }>(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'walbridge%' AND NOT temporary`);
  assert.deepEqual(slots, [], 'both slots removed from the source');
  // The app's later writes to any migrated table are refused by the fences; what committed before them is on the target.
  const running = load as WriteLoad;
  await running.waitFor((st) => st.errors > 0, 30_000);
  await running.stop();
  load = null;
  assert.ok(running.recentErrors.length > 0);
  for (const e of running.recentErrors) assert.match(e, /no longer takes writes on this database/, 'only the fences refused writes');
  await assertSameContent(source.url(), target.url(), APP_TABLES);
});
