/**
 * Bad input stops walbridge before it writes anything: a clear message naming the problem
 * and the fix, a non-zero exit, no slot or publication on the source, no state on the target,
 * and the source's tables untouched.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startPair, type Cluster } from '../harness/cluster.js';
import { startProxy } from '../harness/proxy.js';
import { runCli, startDaemon } from '../helpers/daemon.js';
import { pipelineRow, sourceObjects } from '../helpers/state.js';
import { supabasePoolerUrl } from '../harness/urls.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;

const BASE = `
CREATE TABLE public.users (id bigint PRIMARY KEY, name text);
CREATE TABLE public.memories (id bigint PRIMARY KEY, embedding real[]);
`;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.query(BASE);
  await target.query(BASE);
  await source.query(`INSERT INTO public.users VALUES (1, 'a'), (2, 'b')`);
});

after(async () => destroy?.());

/** Run the daemon to its exit; return the exit code and everything it printed. */
async function runToExit(extraEnv: Record<string, string> = {}, urls?: { source?: string; target?: string }) {
  const d = await startDaemon({
    SOURCE_DATABASE_URL: urls?.source ?? source.url(),
    TARGET_DATABASE_URL: urls?.target ?? target.url(),
    WALBRIDGE_EXIT_ON_ERROR: '1',
    ...extraEnv,
  });
  const { code } = await d.exited;
  return { code, text: d.output.join('\n') };
}

async function assertNothingWritten(): Promise<void> {
  assert.deepEqual(await sourceObjects(source), { slots: [], publications: [] }, 'no slot or publication left on the source');
  assert.equal(await pipelineRow(target), null, 'no walbridge state on the target');
  const [schema] = await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_namespace WHERE nspname = 'walbridge'`);
  assert.equal(schema?.n, '0', 'no walbridge schema on the target');
}

test('a table with neither a primary key nor a replica identity: refused, with the three choices', async () => {
  await source.query(`CREATE TABLE public.audit_log (at timestamptz, what text)`);
  await target.query(`CREATE TABLE public.audit_log (at timestamptz, what text)`);
  try {
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.match(text, /public\.audit_log/);
    assert.match(text, /neither a primary key nor a replica identity/);
    assert.match(text, /REPLICA IDENTITY FULL/);
    assert.match(text, /WALBRIDGE_EXCLUDE_TABLES=public\.audit_log/);
    assert.match(text, /never changes your source tables/);
    await assertNothingWritten();
    const [ident] = await source.query<{ relreplident: string }>(`SELECT relreplident FROM pg_class WHERE oid = 'public.audit_log'::regclass`);
    assert.equal(ident?.relreplident, 'd', 'the source table was not altered');
  } finally {
    await source.query('DROP TABLE public.audit_log');
    await target.query('DROP TABLE public.audit_log');
  }
});

test('a selected table missing on the target: refused, naming it', async () => {
  await source.query(`CREATE TABLE public.orders (id bigint PRIMARY KEY)`);
  try {
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.match(text, /table public\.orders does not exist on the target/);
    await assertNothingWritten();
  } finally {
    await source.query('DROP TABLE public.orders');
  }
});

test('a column of another type on the target (vector-like real[] vs bytea): refused, naming the column', async () => {
  await target.query(`ALTER TABLE public.memories ALTER COLUMN embedding TYPE bytea USING NULL`);
  try {
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.match(text, /column public\.memories\.embedding is real\[\] on the source but bytea on the target/);
    await assertNothingWritten();
  } finally {
    await target.query(`ALTER TABLE public.memories ALTER COLUMN embedding TYPE real[] USING NULL`);
  }
});

test('a column missing on the target: refused with the ALTER TABLE to run', async () => {
  await source.query(`ALTER TABLE public.users ADD COLUMN "Nick Name" varchar(40)`);
  try {
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.match(text, /ALTER TABLE \\?"public\\?"\.\\?"users\\?" ADD COLUMN \\?"Nick Name\\?" character varying\(40\);/);
    await assertNothingWritten();
  } finally {
    await source.query(`ALTER TABLE public.users DROP COLUMN "Nick Name"`);
  }
});

test('a target table that already holds rows at the first start: refused, nothing copied', async () => {
  await target.query(`INSERT INTO public.users VALUES (99, 'already here')`);
  try {
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.match(text, /target tables already hold rows[\s\S]*public\.users/);
    assert.match(text, /TRUNCATE/);
    await assertNothingWritten();
    const rows = await target.query<{ id: string }>('SELECT id::text FROM public.users');
    assert.deepEqual(rows, [{ id: '99' }], 'the target rows were left alone');
  } finally {
    await target.query('TRUNCATE public.users');
  }
});

test('a wrong password: refused, saying to check the password', async () => {
  const { code, text } = await runToExit({}, { source: source.url('app', { password: 'not-the-password' }) });
  assert.equal(code, 1);
  assert.match(text, /cannot log in to the source database 127\.0\.0\.1:\d+\/app/);
  assert.match(text, /Check the user name and password in SOURCE_DATABASE_URL/);
  assert.doesNotMatch(text, /not-the-password/, 'the password is never printed');
  await assertNothingWritten();
});

test('a Supabase pooler URL: refused before connecting, with the direct-connection fix', async () => {
  const { code, text } = await runToExit({}, { source: supabasePoolerUrl(6543, 'pw-secret-1') });
  assert.equal(code, 2);
  assert.match(text, /pooler/);
  assert.match(text, /db\.<project-ref>\.supabase\.co/);
  assert.doesNotMatch(text, /pw-secret-1/);
  await assertNothingWritten();
});

test('a pooler that accepts the connection but not replication: IDENTIFY_SYSTEM fails, named as a pooler', async () => {
  const pooler = await startProxy(source.port, { poolerLike: true });
  try {
    const url = new URL(source.url());
    url.port = String(pooler.port);
    const { code, text } = await runToExit({}, { source: url.toString() });
    assert.equal(code, 1);
    assert.ok(pooler.accepted > 0, 'walbridge went through the pooler');
    assert.match(text, /does not speak the replication protocol: this looks like a connection pooler/);
    assert.match(text, /direct connection/);
    await assertNothingWritten();
  } finally {
    await pooler.close();
  }
});

test('a row the target rejects in the middle of a copy stops walbridge with the reason, instead of hanging', { timeout: 120_000 }, async () => {
  await source.query(`CREATE TABLE public.notes (id bigint PRIMARY KEY, body text)`);
  await source.query(`INSERT INTO public.notes SELECT g, CASE WHEN g = 150000 THEN NULL ELSE 'note ' || g END FROM generate_series(1, 200000) g`);
  await target.query(`CREATE TABLE public.notes (id bigint PRIMARY KEY, body text NOT NULL)`);
  try {
    const started = Date.now();
    const { code, text } = await runToExit();
    assert.equal(code, 1);
    assert.ok(Date.now() - started < 60_000, 'it stops promptly');
    assert.match(text, /null value in column \\?"body\\?"/);
    const [{ n } = { n: '?' }] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.notes');
    assert.equal(n, '0', 'the failed copy left nothing in the table');
    const stuck = await source.query(`SELECT pid FROM pg_stat_activity WHERE application_name = 'walbridge copy'`);
    assert.deepEqual(stuck, [], 'no copy session left open on the source');
  } finally {
    await runCli(['teardown', '--target'], { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
    await source.query('DROP TABLE public.notes');
    await target.query('DROP TABLE public.notes; TRUNCATE public.users');
  }
});

test('after the refusals, the same databases start cleanly', async () => {
  const d = await startDaemon({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url() });
  try {
    await d.waitForLog((l) => l.msg === 'spool applied; streaming', 'streaming');
    const rows = await target.query<{ id: string }>('SELECT id::text FROM public.users ORDER BY id');
    assert.deepEqual(rows, [{ id: '1' }, { id: '2' }]);
  } finally {
    const { code } = await d.stop();
    assert.equal(code, 0);
  }
});
