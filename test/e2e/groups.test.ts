/**
 * Table groups: two walbridge services migrate one source into one target side by side (source
 * 15 → target 17), each with its own slot, publication and state (WALBRIDGE_GROUP): the hot
 * table `messages` in a group of its own, every other table in a second. With the app writing
 * throughout, both copy and stream at once; a table of one group cannot be added to, nor be
 * reported as new by, the other; one group alone is not cut over; at the end every table is
 * equal on both sides, row by row.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { assertSameContent } from '../harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

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
  const [{ made } = { made: false }] = await source.query<{ made: boolean }>(`SELECT to_regclass('walbridge_fence.fences') IS NOT NULL AS made`);
  const raised = made ? await source.query(`SELECT migration FROM walbridge_fence.fences`) : [];
  assert.deepEqual(raised, [], 'no fence was raised');
});

test('at the end every table of both groups is equal on both sides', { timeout: 180_000 }, async () => {
  const stats = await (load as WriteLoad).stop();
  load = null;
  assert.equal(stats.errors, 0);
  await Promise.all([waitForCatchUp(source, target, 120_000, 'walbridge_hot'), waitForCatchUp(source, target, 120_000, 'walbridge_rest')]);
  await assertSameContent(source.url(), target.url(), APP_TABLES);
});
