/**
 * `walbridge verify`: equal databases pass; a changed value, a missing row and an extra row
 * are each found and named; a correct replica of a source under writes verifies clean.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { createAppSchema, seedAppData, startWriteLoad } from '../harness/fixture.js';
import { startRestApi } from '../harness/postgrest.js';
import { runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { waitForCatchUp, waitForPhase } from '../helpers/state.js';

interface Verdict {
  table: string;
  status: string;
  rowsSource: number;
  rowsTarget: number;
  ranges: number;
  differences: { key: string[]; kind: string }[];
  unstableRows: number;
}

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
let daemon: DaemonProcess;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
    await c.query(`
      INSERT INTO public.messages (user_id, role, content, created_at)
      SELECT (SELECT min(id) FROM public.users), 'user', 'history ' || g, now() - g * interval '1 second'
        FROM generate_series(1, 30000) AS g`);
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
  daemon = await startDaemon({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth' });
  await waitForPhase(target, 'streaming', { daemon });
  await waitForCatchUp(source, target);
});

after(async () => {
  daemon?.kill('SIGKILL');
  await destroy?.();
});

async function verify(args: string[] = []): Promise<{ code: number | null; tables: Verdict[]; text: string }> {
  const r = await runCli(['verify', '--json', '--range-rows', '5000', ...args], {
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_SCHEMAS: 'public,auth',
  });
  try {
    return { code: r.code, tables: (JSON.parse(r.stdout) as { tables: Verdict[] }).tables, text: r.out };
  } catch {
    throw new Error(`verify printed no JSON (exit ${r.code}):\n${r.out}`);
  }
}

test('equal databases verify clean, table by table, in key ranges', async () => {
  const { code, tables } = await verify();
  assert.equal(code, 0, JSON.stringify(tables.filter((t) => t.status !== 'equal')));
  assert.equal(tables.length, 16);
  for (const t of tables) {
    assert.equal(t.status, 'equal', t.table);
    assert.equal(t.rowsSource, t.rowsTarget, t.table);
  }
  const messages = tables.find((t) => t.table === 'public.messages');
  assert.ok((messages?.ranges ?? 0) >= 6, 'a big table is split into ranges');
  assert.ok((messages?.rowsSource ?? 0) > 30_000);
});

test('a changed value, a missing row and an extra row are each found and named', async () => {
  const [user] = await target.query<{ id: string; lang: string | null }>('SELECT id::text, language_code AS lang FROM public.users ORDER BY id LIMIT 1 OFFSET 3');
  const [item] = await target.query<{ order_id: string; line_no: string; r: string }>(
    'SELECT order_id::text, line_no::text, x::text AS r FROM public.order_items x ORDER BY 1, 2 LIMIT 1 OFFSET 7',
  );
  const [msg] = await target.query<{ id: string }>('SELECT id::text FROM public.messages ORDER BY id LIMIT 1 OFFSET 20000');
  const [hook] = await target.query<{ r: string }>('SELECT x::text AS r FROM public.webhook_dedupe x WHERE ctid = (SELECT min(ctid) FROM public.webhook_dedupe)');
  await target.withClient(async (c) => {
    await c.query('SET session_replication_role = replica');
    await c.query(`UPDATE public.users SET language_code = 'xx' WHERE id = $1`, [user?.id]);
    await c.query('DELETE FROM public.order_items WHERE order_id = $1 AND line_no = $2', [item?.order_id, item?.line_no]);
    await c.query(`UPDATE public.messages SET content = content || '!' WHERE id = $1`, [msg?.id]);
    await c.query(`INSERT INTO public.crm_orders (crm_id, crm_status, payload) VALUES (4242, 'ghost', '{}')`);
    await c.query('DELETE FROM public.webhook_dedupe WHERE ctid = (SELECT min(ctid) FROM public.webhook_dedupe)');
  });
  try {
    const { code, tables, text } = await verify(['--max-differences', '5']);
    assert.equal(code, 1, text);
    const diff = (table: string) => tables.find((t) => t.table === table) as Verdict;
    assert.deepEqual(diff('public.users').differences, [{ key: [user?.id], kind: 'changed' }]);
    assert.deepEqual(diff('public.order_items').differences, [{ key: [item?.order_id, item?.line_no], kind: 'missing on target' }]);
    assert.deepEqual(diff('public.messages').differences, [{ key: [msg?.id], kind: 'changed' }], 'found inside one of many ranges');
    assert.deepEqual(diff('public.crm_orders').differences, [{ key: ['4242'], kind: 'extra on target' }]);
    assert.equal(diff('public.webhook_dedupe').status, 'different', 'a table without a key is compared by content');
    assert.equal(diff('public.webhook_dedupe').differences[0]?.kind, 'missing on target');
    const broken = ['public.users', 'public.order_items', 'public.messages', 'public.crm_orders', 'public.webhook_dedupe'];
    for (const t of tables.filter((x) => !broken.includes(x.table))) assert.equal(t.status, 'equal', t.table);
    const human = await runCli(['verify', '--table', 'public.users'], { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth' });
    assert.equal(human.code, 1);
    assert.match(human.stdout, new RegExp(`DIFFERENT\\s+public\\.users[\\s\\S]*changed\\s+key \\(${user?.id}\\)`));
    assert.doesNotMatch(human.stdout, /public\.orders/, '--table limits the comparison');
  } finally {
    // Put the target back as the source has it, for the next test.
    await target.withClient(async (c) => {
      await c.query('SET session_replication_role = replica');
      await c.query('UPDATE public.users SET language_code = $2 WHERE id = $1', [user?.id, user?.lang]);
      await c.query('INSERT INTO public.order_items SELECT ($1::text::public.order_items).*', [item?.r]);
      await c.query(`UPDATE public.messages SET content = left(content, -1) WHERE id = $1`, [msg?.id]);
      await c.query('DELETE FROM public.crm_orders WHERE crm_id = 4242');
      await c.query('INSERT INTO public.webhook_dedupe SELECT ($1::text::public.webhook_dedupe).*', [hook?.r]);
    });
  }
});

test('a correct replica of a source under writes verifies clean', { timeout: 180_000 }, async () => {
  const before = await verify();
  assert.equal(before.code, 0, JSON.stringify(before.tables.filter((t) => t.status !== 'equal').map((t) => [t.table, t.differences])));

  const load = startWriteLoad(source.url(), { ratePerSec: 80, seed: 11 });
  try {
    await load.waitFor((s) => s.transactions >= 50, 30_000);
    const { code, tables: verdicts, text } = await verify();
    assert.equal(code, 0, text);
    for (const v of verdicts) assert.equal(v.status, 'equal', `${v.table}: ${JSON.stringify(v.differences)} unstable ${v.unstableRows}`);
    assert.ok(load.stats.transactions > 60, 'the source kept writing during the comparison');
  } finally {
    await load.stop();
  }
});

test("--via-api compares what the app saw through Supabase's REST API with the target", async () => {
  const key = 'service-role-key-7c1d0e';
  const api = await startRestApi(source.url(), key);
  const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth', SUPABASE_URL: api.url, SUPABASE_SERVICE_ROLE_KEY: key };
  try {
    const ok = await runCli(['verify', '--via-api', '--table', 'public.users', '--table', 'auth.users'], env);
    assert.equal(ok.code, 0, ok.out);
    assert.match(ok.stdout, /EQUAL\s+public\.users\s+\d+ rows through the API, \d+ on the target/);
    assert.ok(api.requests.some((r) => r.path === '/rest/v1/users' && r.profile === 'auth'), 'auth.users asked in its schema');
    await target.query(`SET session_replication_role = replica; INSERT INTO auth.users (id, email) VALUES (gen_random_uuid(), 'ghost@x.io')`);
    try {
      const bad = await runCli(['verify', '--via-api', '--table', 'auth.users'], env);
      assert.equal(bad.code, 1, bad.out);
      assert.match(bad.stdout, /DIFFERENT\s+auth\.users\s+(\d+) rows through the API, (\d+) on the target/);
      assert.doesNotMatch(bad.out, new RegExp(key), 'the service role key is never printed');
    } finally {
      await target.query(`DELETE FROM auth.users WHERE email = 'ghost@x.io'`);
    }
    const missing = await runCli(['verify', '--via-api'], { ...env, SUPABASE_SERVICE_ROLE_KEY: '' });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /SUPABASE_SERVICE_ROLE_KEY/);
  } finally {
    await api.close();
  }
});
