/**
 * The fence cutover sets on the database the app leaves, against a real server (PostgreSQL 15,
 * as on Supabase), set as a role that owns the tables and is not a superuser (Supabase's
 * `postgres`): afterwards no write commits on a fenced table whoever writes, a replication apply
 * session still can, a write in flight commits before the fence or not at all, and the change
 * stream carries the fence's marker.
 */
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { installFence, liftFence, raiseFence, type FenceSpec, type RaiseOptions } from '../../src/cutover/fence.js';
import { readFences } from '../../src/state/fences.js';
import { formatLsn } from '../../src/lsn.js';
import { FENCE_MARKER_PREFIX, fenceNames } from '../../src/sql/fence.js';
import { decodePgoutput, type PgoutputMessage } from '../../src/replicator/pgoutput.js';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { waitFor } from '../harness/lsn.js';

let cluster: Cluster;
const OWNER = { user: 'app_owner', password: 'owner-pw-7' };
const API = { user: 'api_writer', password: 'api-pw-7' };

before(async () => {
  cluster = await startCluster({ major: 15, name: 'fence' });
  await cluster.query(`
    CREATE ROLE app_owner LOGIN NOSUPERUSER PASSWORD 'owner-pw-7';
    CREATE ROLE api_writer LOGIN NOSUPERUSER PASSWORD 'api-pw-7';
    GRANT CREATE ON DATABASE app TO app_owner;
    CREATE SCHEMA shop AUTHORIZATION app_owner;
    GRANT USAGE ON SCHEMA shop TO api_writer;
    SET ROLE app_owner;
    CREATE TABLE shop.orders (id int PRIMARY KEY, note text);
    CREATE TABLE shop.events (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE shop.events_2026 PARTITION OF shop.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    CREATE TABLE shop.untouched (id int PRIMARY KEY);
    GRANT INSERT, UPDATE, DELETE, SELECT, TRUNCATE ON ALL TABLES IN SCHEMA shop TO api_writer;
    INSERT INTO shop.orders VALUES (1, 'before');
    RESET ROLE;
    CREATE PUBLICATION fence_pub FOR TABLE shop.orders, shop.events;`);
});

after(async () => {
  await cluster?.destroy();
});

async function session(who?: { user: string; password: string }): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: cluster.url('app', who) });
  await c.connect();
  return c;
}

async function as<T>(who: { user: string; password: string } | undefined, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = await session(who);
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** What cutover does: install the fence dormant, later raise it. */
async function setFence(c: pg.Client, s: FenceSpec, opts?: RaiseOptions) {
  await installFence(c, s);
  return raiseFence(c, s, opts);
}

const spec: FenceSpec = {
  migration: 'walbridge',
  direction: 'forward',
  tables: [
    { schema: 'shop', name: 'orders' },
    { schema: 'shop', name: 'events' },
  ],
  message: 'no longer takes writes on this database: walbridge moved it to the new database',
  hint: "Point the app's DATABASE_URL at the new database.",
};

/** Every kind of write, one at a time; each must fail with the fence's error. */
const WRITES = [
  "INSERT INTO shop.orders VALUES (2, 'after')",
  "UPDATE shop.orders SET note = 'changed'",
  'DELETE FROM shop.orders',
  'TRUNCATE shop.orders',
  "INSERT INTO shop.orders VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET note = 'upserted'",
  "INSERT INTO shop.events VALUES (1, '2026-05-01')",
  "INSERT INTO shop.events_2026 VALUES (2, '2026-05-02')",
  'DELETE FROM shop.events_2026',
];

async function refused(c: pg.Client, sql: string): Promise<void> {
  await assert.rejects(c.query(sql), (err: pg.DatabaseError) => {
    assert.equal(err.code, '25006', `${sql}: ${err.message}`);
    assert.match(err.message, /^shop\.(orders|events|events_2026) no longer takes writes on this database: walbridge moved it to the new database$/);
    assert.equal(err.hint, "Point the app's DATABASE_URL at the new database.");
    return true;
  });
}

test('set by the tables\' owner (no superuser): no write commits on a fenced table, whoever writes; others are untouched', async () => {
  const fence = await as(OWNER, (c) => setFence(c, spec));
  assert.ok(fence.lsn !== null && fence.lsn > 0n, 'the position the fence committed at');
  assert.deepEqual(fence.tables, ['shop.orders', 'shop.events']);
  for (const who of [OWNER, API, undefined /* the superuser postgres */]) {
    await as(who, async (c) => {
      for (const sql of WRITES) await refused(c, sql);
      await c.query('INSERT INTO shop.untouched VALUES ($1)', [Math.floor(Math.random() * 1e9)]);
    });
  }
  // An app's COPY FROM STDIN goes through the same trigger.
  await as(API, async (c) => {
    await assert.rejects(pipeline(Readable.from(['3\tcopied\n']), c.query(copyFrom('COPY shop.orders FROM STDIN'))), (err: pg.DatabaseError) => err.code === '25006');
  });
  assert.deepEqual(await cluster.query<{ id: number; note: string }>('SELECT id, note FROM shop.orders'), [{ id: 1, note: 'before' }], 'nothing changed');
  assert.deepEqual((await as(undefined, (c) => readFences(c))).map((f) => f.migration), ['walbridge']);

  // A replication apply session (session_replication_role = replica: walbridge's way back) still writes.
  await as(undefined, async (c) => {
    await c.query('SET session_replication_role = replica');
    await c.query("INSERT INTO shop.orders VALUES (10, 'the way back')");
    await c.query("INSERT INTO shop.events_2026 VALUES (10, '2026-06-01')");
  });

  // Lifted, it names the migrated tables it stood on (as raised; the partition counts with its table).
  assert.deepEqual((await as(OWNER, (c) => liftFence(c, 'walbridge'))).sort(), ['shop.events', 'shop.orders']);
  assert.deepEqual(await as(undefined, (c) => c.query(`SELECT tgname FROM pg_trigger WHERE tgname LIKE 'walbridge_fence%'`)).then((r) => r.rows), [], 'every trigger is gone, the partition\'s too');
  await as(API, (c) => c.query("INSERT INTO shop.orders VALUES (11, 'writable again')"));
  assert.deepEqual(await as(undefined, (c) => readFences(c)), []);
  await cluster.query('DELETE FROM shop.orders WHERE id >= 10; DELETE FROM shop.events');
});

test('a write in flight when the fence goes up commits before its marker; a write that comes meanwhile is refused at once', async () => {
  await as(OWNER, (c) => installFence(c, spec));
  const writer = await session(API);
  try {
    await writer.query('BEGIN');
    await writer.query("INSERT INTO shop.orders VALUES (20, 'in flight')");
    let raised = false;
    // (graceMs 0: the writer is not a reason to stay down, as a long one would be: see the next test.)
    const raising = as(OWNER, (c) => raiseFence(c, spec, { graceMs: 0 })).finally(() => (raised = true));
    // The switch goes up; the fence then waits for the writer's transaction to end before it
    // writes its marker, watching it (no lock request that the app's writes would queue behind).
    await waitFor(async () => (await cluster.query<{ up: boolean }>(`SELECT is_called AS up FROM ${fenceNames('walbridge').switch}`))[0]?.up === true, {
      what: 'the switch to go up',
      timeoutMs: 10_000,
      intervalMs: 10,
    });
    // A write that comes meanwhile is refused at once, while the fence still waits.
    await as(API, (c) => refused(c, "INSERT INTO shop.orders VALUES (22, 'meanwhile')"));
    assert.equal(raised, false, 'the fence waits for the write in flight');
    assert.deepEqual(await cluster.query(`SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'`), [], 'nobody waits on a lock');
    await writer.query('COMMIT');
    const fence = await raising;
    assert.deepEqual(await cluster.query<{ note: string }>('SELECT note FROM shop.orders WHERE id = 20'), [{ note: 'in flight' }], 'the write in flight committed');
    await refused(writer, "INSERT INTO shop.orders VALUES (21, 'too late')");
    assert.ok(fence.lsn !== null);
  } finally {
    await writer.end();
    await as(OWNER, (c) => liftFence(c, 'walbridge'));
    await cluster.query('DELETE FROM shop.orders WHERE id >= 20');
  }
});

test('a write transaction left open: the fence does not go up, names it, and leaves every table writable', async () => {
  await as(OWNER, (c) => installFence(c, spec));
  const writer = await session(API);
  try {
    await writer.query('BEGIN');
    await writer.query("UPDATE shop.orders SET note = 'held' WHERE id = 1");
    await assert.rejects(
      as(OWNER, (c) => raiseFence(c, spec, { graceMs: 200 })),
      (err: Error & { hint?: string }) => {
        assert.match(err.message, /^a transaction keeps writing to shop\.orders \(pid \d+\): the fence would refuse the app's writes while it waits for it; nothing was fenced$/);
        assert.match(err.hint ?? '', /pg_terminate_backend\(\d+\)/);
        return true;
      },
    );
    await writer.query('ROLLBACK');
    await as(API, (c) => c.query("UPDATE shop.orders SET note = 'writable' WHERE id = 1"));
    assert.deepEqual(await as(undefined, (c) => readFences(c)), []);
  } finally {
    await writer.end();
    await as(OWNER, (c) => liftFence(c, 'walbridge'));
  }
});

test('a write transaction that ends within the grace: the fence goes up after it, and the pause starts at the switch, not at the look for long writers', async () => {
  await as(OWNER, (c) => installFence(c, spec));
  const writer = await session(API);
  try {
    await writer.query('BEGIN');
    await writer.query("UPDATE shop.orders SET note = 'short' WHERE id = 1");
    const t0 = Date.now();
    const raising = as(OWNER, (c) => raiseFence(c, spec, { graceMs: 600 }));
    await new Promise((r) => setTimeout(r, 200));
    await writer.query('COMMIT');
    // Meanwhile the app still writes: nothing is refused before the switch.
    await as(API, (c) => c.query("UPDATE shop.orders SET note = 'still writable' WHERE id = 1"));
    const fence = await raising;
    assert.ok(fence.switchedAtMs >= t0 + 600, `the switch went up ${fence.switchedAtMs - t0} ms after raising began, before the grace of 600 ms was over`);
    await refused(writer, "UPDATE shop.orders SET note = 'too late' WHERE id = 1");
  } finally {
    await writer.end();
    await as(OWNER, (c) => liftFence(c, 'walbridge'));
    await cluster.query("UPDATE shop.orders SET note = 'before' WHERE id = 1");
  }
});

test('the change stream carries the fence\'s marker, in the fence\'s own transaction', async () => {
  await cluster.query(`SELECT pg_create_logical_replication_slot('fence_peek', 'pgoutput')`);
  try {
    const fence = await as(OWNER, (c) => setFence(c, spec));
    const rows = await cluster.query<{ lsn: string; data: Buffer }>(
      `SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes('fence_peek', NULL, NULL, 'proto_version', '1', 'publication_names', 'fence_pub', 'messages', 'true')`,
    );
    const messages: PgoutputMessage[] = rows.map((r) => decodePgoutput(r.data));
    const marker = messages.find((m) => m.tag === 'message');
    assert.ok(marker && marker.tag === 'message', `a logical message among ${messages.map((m) => m.tag).join(', ')}`);
    assert.equal(marker.prefix, FENCE_MARKER_PREFIX);
    assert.equal(marker.transactional, true);
    assert.equal(marker.content.toString(), fence.marker);
    const i = messages.indexOf(marker);
    assert.equal(messages[i - 1]?.tag, 'begin');
    assert.equal(messages[i + 1]?.tag, 'commit');
    const commit = messages[i + 1];
    assert.ok(commit?.tag === 'commit' && fence.lsn !== null && commit.endLsn <= fence.lsn, `the fence commits at ${commit?.tag === 'commit' ? formatLsn(commit.endLsn) : '?'}, before its recorded position`);
  } finally {
    await as(OWNER, (c) => liftFence(c, 'walbridge'));
    await cluster.query(`SELECT pg_drop_replication_slot('fence_peek')`);
  }
});
