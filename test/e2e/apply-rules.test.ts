/**
 * The apply rules (src/replicator/apply/), one test each, against a real target: an Applier
 * is fed decoded pgoutput messages in-process, on the session, state and table plans the
 * daemon uses, and each test checks what an operator would see on the target (rows, the
 * recorded position, the server's own statistics and activity views, a log line).
 *
 * One PostgreSQL 17 cluster and no source: the messages are built here (SourceLog), with
 * commit positions that only grow. Each test gets its own database: its own tables, its
 * own walbridge state, its own statistics counters.
 */
import assert from 'node:assert/strict';
import { after, before, test, type TestContext } from 'node:test';
import type pg from 'pg';
import { compareWithTarget, resolveSelection } from '../../src/catalog/tables.js';
import { Metrics } from '../../src/health/metrics.js';
import { createLogger } from '../../src/log.js';
import { formatLsn, parseLsn, type Lsn } from '../../src/lsn.js';
import { pgMicrosFromMs } from '../../src/pg/epoch.js';
import { displayTable } from '../../src/pg/ident.js';
import { openTargetWriter } from '../../src/pg/sessions.js';
import { Applier, type ApplierOptions } from '../../src/replicator/apply/applier.js';
import type { TableRuntime } from '../../src/replicator/apply/binding.js';
import {
  Tuple,
  UNCHANGED_TOAST,
  type ChangeMessage,
  type DeleteMessage,
  type InsertMessage,
  type LogicalMessage,
  type PgoutputMessage,
  type RelationMessage,
  type TruncateMessage,
  type TupleValue,
  type UpdateMessage,
} from '../../src/replicator/pgoutput.js';
import { PARTITION_TRUNCATE_PREFIX } from '../../src/sql/partition-truncate.js';
import { DEFAULT_STATE_SCHEMA, stateSql } from '../../src/sql/state.js';
import { WalbridgeError } from '../../src/errors.js';
import { migrateState } from '../../src/state/migrate.js';
import { startCluster, type Cluster } from '../harness/cluster.js';

let cluster: Cluster;

before(async () => {
  cluster = await startCluster({ major: 17, name: 'apply-rules', logical: false });
});

after(async () => {
  await cluster?.destroy();
});

// ---------------------------------------------------------------------------------------------
// The source's side: pgoutput messages as the decoder hands them to the applier
// ---------------------------------------------------------------------------------------------

/** Where the pipeline starts: its consistent point, the copy LSN of every table unless a test says otherwise. */
const START: Lsn = parseLsn('1/0');

interface Txn {
  /** BEGIN, the changes, COMMIT. */
  messages: PgoutputMessage[];
  /** The commit record's LSN (BEGIN's finalLsn). */
  finalLsn: Lsn;
  /** Just past the commit record: what applied_lsn records. */
  endLsn: Lsn;
}

/**
 * Source transactions in commit order: each one commits after the one built before it. Build
 * them in the order they are fed, as the source would send them: a transaction built earlier
 * but fed later is one the applier has already passed, and it skips it (exactly once).
 */
class SourceLog {
  private lsn = START;
  private xid = 700;

  txn(...changes: Array<ChangeMessage | LogicalMessage>): Txn {
    this.lsn += 0x100n;
    const finalLsn = this.lsn;
    const endLsn = finalLsn + 0x38n;
    const commitTime = pgMicrosFromMs(Date.UTC(2026, 0, 1) + this.xid * 1000);
    return {
      finalLsn,
      endLsn,
      messages: [
        { tag: 'begin', finalLsn, commitTime, xid: this.xid++ },
        ...changes,
        { tag: 'commit', commitLsn: finalLsn, endLsn, commitTime },
      ],
    };
  }
}

function ins(rel: RelationMessage, values: TupleValue[]): InsertMessage {
  return { tag: 'insert', relationId: rel.relationId, newTuple: Tuple.of(values) };
}

/** An UPDATE that keeps the key (no old tuple), or with REPLICA IDENTITY FULL the whole old row ('O'). */
function upd(rel: RelationMessage, values: TupleValue[], oldRow?: TupleValue[]): UpdateMessage {
  const full = rel.replicaIdentity === 'f';
  if (full && oldRow === undefined) throw new Error('an UPDATE under REPLICA IDENTITY FULL carries the old row');
  return {
    tag: 'update',
    relationId: rel.relationId,
    oldKind: full ? 'O' : null,
    oldTuple: oldRow === undefined ? null : Tuple.of(oldRow),
    newTuple: Tuple.of(values),
  };
}

/** A DELETE as pgoutput sends it: the key columns (others NULL), or the whole old row under REPLICA IDENTITY FULL. */
function del(rel: RelationMessage, oldRow: TupleValue[]): DeleteMessage {
  const full = rel.replicaIdentity === 'f';
  return {
    tag: 'delete',
    relationId: rel.relationId,
    oldKind: full ? 'O' : 'K',
    oldTuple: Tuple.of(full ? oldRow : oldRow.map((v, i) => (rel.columns[i]?.isKey ? v : null))),
  };
}

function truncate(...rels: RelationMessage[]): TruncateMessage {
  return { tag: 'truncate', relationIds: rels.map((r) => r.relationId), cascade: false, restartIdentity: false };
}

/**
 * The message walbridge's trigger writes when a partition is truncated on the source
 * (sql/partition-truncate.ts), `ancestors` the nearest first: public.<name> each.
 */
function truncatedPartition(partition: string, ancestors: string[], migration = 'walbridge_test'): LogicalMessage {
  const table = (name: string) => ({ schema: 'public', name });
  const content = { migration, partition: table(partition), ancestors: ancestors.map(table) };
  return { tag: 'message', transactional: true, lsn: 0n, prefix: PARTITION_TRUNCATE_PREFIX, content: Buffer.from(JSON.stringify(content)) };
}

/** Hand messages to the applier one by one, waiting where it asks to (a relation, a part sent). */
async function feed(applier: Applier, ...batches: Array<PgoutputMessage[] | Txn | RelationMessage>): Promise<void> {
  for (const b of batches) {
    const msgs = Array.isArray(b) ? b : 'tag' in b ? [b] : b.messages;
    for (const m of msgs) await applier.handle(m);
  }
}

// ---------------------------------------------------------------------------------------------
// The target's side: a database with the tables, walbridge's state, the plans, the session
// ---------------------------------------------------------------------------------------------

interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

interface World {
  /** The applier's session (session_replication_role = replica), and its backend pid. */
  client: pg.Client;
  pid: number;
  tables: Map<string, TableRuntime>;
  log: LogLine[];
  metrics: Metrics;
  /** The Relation message the source would send for public.<name> (oid, columns, replica identity from the catalog). */
  rel(name: string): RelationMessage;
  runtime(name: string): TableRuntime;
  applier(opts?: Partial<ApplierOptions>, client?: pg.Client, startAt?: Lsn): Applier;
  /** Another session, as an operator with psql. */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** walbridge.pipeline.applied_lsn, read from another session. */
  appliedLsn(): Promise<Lsn>;
  /** A new session as the daemon opens it (closed after the test). */
  writer(): Promise<pg.Client>;
}

let worlds = 0;

async function openWorld(t: TestContext, ddl: string): Promise<World> {
  const db = `apply_${++worlds}`;
  await cluster.query(`CREATE DATABASE ${db}`, [], 'postgres');
  await cluster.query(ddl, [], db);

  const sessions: pg.Client[] = [];
  t.after(async () => {
    await Promise.all(sessions.map((c) => c.end().catch(() => undefined)));
  });
  const writer = async () => {
    const c = await openTargetWriter(cluster.url(db), 'walbridge apply-rules test', { toastLz4: true });
    sessions.push(c);
    return c;
  };

  const client = await writer();
  const pid = Number((await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid);
  const state = stateSql(DEFAULT_STATE_SCHEMA);
  await migrateState(client, state);
  await client.query(state.INSERT_PIPELINE, ['7000000000000000001', 'app', 'walbridge_test', 'walbridge_test']);
  await client.query(state.START_BACKFILL, [formatLsn(START)]);

  // Plans as the daemon makes them; the same database stands for both sides.
  const plans = await cluster.withClient(async (source) => {
    const selected = await resolveSelection(source, { schemas: ['public'], includeTables: null, excludeTables: [] });
    const cmp = await compareWithTarget(source, client, selected);
    assert.deepEqual(cmp.problems, []);
    return cmp.plans;
  }, db);
  const tables = new Map<string, TableRuntime>(plans.map((plan) => [displayTable(plan), { plan, copyLsn: START }]));

  const log: LogLine[] = [];
  const logger = createLogger('info', { write: (s: string) => void log.push(JSON.parse(s) as LogLine) });
  const metrics = new Metrics({ defaultMetrics: false });

  const runtime = (name: string): TableRuntime => {
    const r = tables.get(`public.${name}`);
    if (!r) throw new Error(`no table public.${name} in this world`);
    return r;
  };
  const query = async <T = Record<string, unknown>>(sql: string, params?: unknown[]) => cluster.query<T>(sql, params, db);
  return {
    client,
    pid,
    tables,
    log,
    metrics,
    rel(name) {
      const plan = runtime(name).plan;
      const identity = plan.source.replicaIdentity;
      return {
        tag: 'relation',
        relationId: plan.source.oid,
        schema: plan.schema,
        name: plan.name,
        replicaIdentity: identity,
        // pgoutput flags the key columns; under REPLICA IDENTITY FULL, every column.
        columns: plan.copyColumns.map((c) => ({ name: c.name, typeOid: c.typeOid, typeMod: -1, isKey: identity === 'f' || plan.targetKey.includes(c.name) })),
      };
    },
    runtime,
    applier(opts = {}, session = client, startAt = START) {
      return new Applier(session, tables, { lsn: startAt, commitTime: null }, { stateSql: state, batchChanges: 10_000, batchMs: 60_000, ...opts }, logger, metrics);
    },
    query,
    async appliedLsn() {
      const [row] = await query<{ lsn: string }>('SELECT applied_lsn::text AS lsn FROM walbridge.pipeline');
      return parseLsn(row?.lsn ?? '0/0');
    },
    writer,
  };
}

/** A table's committed rows, each as its record's text, sorted: what another session sees, byte for byte. */
async function rows(w: World, table: string): Promise<string[]> {
  return (await w.query<{ r: string }>(`SELECT t::text AS r FROM public.${table} AS t ORDER BY 1`)).map((x) => x.r);
}

/**
 * Rows the server wrote to a table so far (pg_stat_user_tables). The applier's session
 * flushes its pending statistics first: PostgreSQL 15+ reports them at most once a second
 * unless asked, and a forced flush happens before the server answers this very query.
 * Between batches only (the applier's session must be idle).
 */
async function writes(w: World, table: string): Promise<{ ins: number; upd: number; del: number }> {
  await w.client.query('SELECT pg_stat_force_next_flush()');
  const [r] = await w.query<{ ins: number; upd: number; del: number }>(
    'SELECT n_tup_ins::int AS ins, n_tup_upd::int AS upd, n_tup_del::int AS del FROM pg_stat_user_tables WHERE relid = $1::regclass',
    [`public.${table}`],
  );
  if (!r) throw new Error(`no statistics for ${table}`);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The rules
// ---------------------------------------------------------------------------------------------

test('updates that keep the key are folded: each row is written once per batch, with its last values', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.item (id int PRIMARY KEY, name text NOT NULL, qty int)');
  const item = w.rel('item');
  const applier = w.applier();
  const src = new SourceLog();

  await feed(applier, item, src.txn(ins(item, ['1', 'first', '1'])));
  await applier.drain();
  const before = await writes(w, 'item');
  assert.deepEqual(before, { ins: 1, upd: 0, del: 0 });

  // One batch: a new row inserted then updated twice; an existing row updated three times.
  await feed(
    applier,
    src.txn(ins(item, ['2', 'second', '0'])),
    src.txn(upd(item, ['2', 'second', '1'])),
    src.txn(upd(item, ['2', 'second v2', '2']), upd(item, ['1', 'first', '2'])),
    src.txn(upd(item, ['1', 'first v3', '3'])),
  );
  const last = src.txn(upd(item, ['1', 'first v3', '4']));
  await feed(applier, last);
  await applier.drain();

  assert.deepEqual(await rows(w, 'item'), ['(1,"first v3",4)', '(2,"second v2",2)']);
  const afterBatch = await writes(w, 'item');
  // Row 2's updates went into its INSERT, row 1's three into one UPDATE.
  assert.deepEqual({ ins: afterBatch.ins - before.ins, upd: afterBatch.upd - before.upd }, { ins: 1, upd: 1 });
  assert.equal(await w.appliedLsn(), last.endLsn);
});

test('a table with a unique constraint besides its key is not folded, and ends with the same values', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.seat (id int PRIMARY KEY, code text UNIQUE, qty int)');
  const seat = w.rel('seat');
  const applier = w.applier();
  const src = new SourceLog();

  await feed(applier, seat, src.txn(ins(seat, ['1', 'A1', '1'])));
  await applier.drain();
  const before = await writes(w, 'seat');

  // The same changes as the folding test: 5 UPDATEs.
  await feed(
    applier,
    src.txn(ins(seat, ['2', 'B1', '0'])),
    src.txn(upd(seat, ['2', 'B1', '1'])),
    src.txn(upd(seat, ['2', 'B2', '2']), upd(seat, ['1', 'A1', '2'])),
    src.txn(upd(seat, ['1', 'A3', '3'])),
    src.txn(upd(seat, ['1', 'A3', '4'])),
  );
  await applier.drain();

  assert.deepEqual(await rows(w, 'seat'), ['(1,A3,4)', '(2,B2,2)']);
  const afterBatch = await writes(w, 'seat');
  // Every UPDATE wrote its row: folding could move a value ahead of another row's change.
  assert.deepEqual({ ins: afterBatch.ins - before.ins, upd: afterBatch.upd - before.upd }, { ins: 1, upd: 5 });
});

test('grouped statements that trip a unique constraint are sent again in source order', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.handle (id int PRIMARY KEY, u text NOT NULL UNIQUE, note text)');
  const handle = w.rel('handle');
  const applier = w.applier();
  const src = new SourceLog();

  await feed(applier, handle, src.txn(ins(handle, ['1', 'x', 'A'])));
  await applier.drain();

  // A hands 'x' to B; D's 'd' goes to E after D is deleted. Grouped, B's and E's INSERTs join
  // the first INSERT (C's) and run before A's UPDATE and D's DELETE: both collide.
  await feed(
    applier,
    src.txn(ins(handle, ['3', 'c', 'C'])),
    src.txn(upd(handle, ['1', 'y', 'A'])),
    src.txn(ins(handle, ['2', 'x', 'B'])),
    src.txn(ins(handle, ['4', 'd', 'D'])),
    src.txn(del(handle, ['4', 'd', 'D'])),
  );
  const last = src.txn(ins(handle, ['5', 'd', 'E']));
  await feed(applier, last);
  await applier.drain();

  assert.deepEqual(await rows(w, 'handle'), ['(1,y,A)', '(2,x,B)', '(3,c,C)', '(5,d,E)']);
  assert.equal(await w.appliedLsn(), last.endLsn);
  assert.equal(applier.durablePosition.lsn, last.endLsn);
  assert.ok(
    w.log.some((l) => l.msg === 'grouped statements tripped a unique constraint; applying the batch in source order' && l.code === '23505'),
    `the fallback is logged; log: ${JSON.stringify(w.log)}`,
  );
});

const PAD = 'ü'.repeat(100);

test('a transaction larger than the buffer is sent in parts inside one open target transaction', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.bulk (id int PRIMARY KEY, payload text NOT NULL)');
  const bulk = w.rel('bulk');
  const applier = w.applier({ maxBufferBytes: 4096 });
  const src = new SourceLog();

  const n = 200; // about 13 parts of 4 kB
  const big = src.txn(...Array.from({ length: n }, (_, i) => ins(bulk, [String(i + 1), `${i + 1} ${PAD}`])));
  const commit = big.messages.pop() as PgoutputMessage;
  await feed(applier, bulk, big.messages);

  // Before its COMMIT: nobody else sees a row, but the applier's session holds a transaction that wrote them.
  assert.deepEqual(await w.query('SELECT count(*)::int AS n FROM public.bulk'), [{ n: 0 }]);
  assert.deepEqual(await w.query('SELECT state, backend_xid IS NOT NULL AS wrote FROM pg_stat_activity WHERE pid = $1', [w.pid]), [
    { state: 'idle in transaction', wrote: true },
  ]);
  const locks = await w.query<{ mode: string }>(`SELECT mode FROM pg_locks WHERE pid = $1 AND relation = 'public.bulk'::regclass AND granted`, [w.pid]);
  assert.ok(locks.some((l) => l.mode === 'RowExclusiveLock'), JSON.stringify(locks));
  assert.equal(applier.durablePosition.lsn, START);
  assert.equal(await w.appliedLsn(), START);

  await feed(applier, [commit]);
  await applier.drain();
  assert.deepEqual(await w.query('SELECT count(*)::int AS n, count(*) FILTER (WHERE payload = id || $1)::int AS exact FROM public.bulk', [` ${PAD}`]), [
    { n, exact: n },
  ]);
  assert.equal(await w.appliedLsn(), big.endLsn);
  assert.equal(applier.durablePosition.lsn, big.endLsn);
});

test('a large transaction cut off before its COMMIT leaves nothing; sent again, it is applied once', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.bulk (id int PRIMARY KEY, payload text NOT NULL)');
  const bulk = w.rel('bulk');
  const applier = w.applier({ maxBufferBytes: 4096 });
  const src = new SourceLog();

  const small = src.txn(ins(bulk, ['1', 'before']));
  await feed(applier, bulk, small);
  await applier.drain();

  const big = src.txn(...Array.from({ length: 200 }, (_, i) => ins(bulk, [String(i + 2), `${i + 2} ${PAD}`])));
  await feed(applier, big.messages.slice(0, -1));
  // Parts were sent (the session wrote), then the stream breaks and the daemon abandons the transaction.
  assert.deepEqual(await w.query('SELECT state, backend_xid IS NOT NULL AS wrote FROM pg_stat_activity WHERE pid = $1', [w.pid]), [
    { state: 'idle in transaction', wrote: true },
  ]);
  await applier.rollback();

  assert.deepEqual(await w.query('SELECT state, backend_xid IS NOT NULL AS wrote FROM pg_stat_activity WHERE pid = $1', [w.pid]), [
    { state: 'idle', wrote: false },
  ]);
  assert.deepEqual(await rows(w, 'bulk'), ['(1,before)']);
  assert.equal(await w.appliedLsn(), small.endLsn);
  assert.equal(applier.durablePosition.lsn, small.endLsn);

  // The source sends it again from the top (a new stream describes the relation again).
  await feed(applier, bulk, big);
  await applier.drain();
  assert.deepEqual(await w.query('SELECT count(*)::int AS n, min(id) AS lo, max(id) AS hi FROM public.bulk'), [{ n: 201, lo: 1, hi: 201 }]);
  assert.equal(await w.appliedLsn(), big.endLsn);
});

test('after a restart from the recorded position, a transaction sent again is skipped and the next applied', async (t) => {
  // No key: a transaction applied twice would show as a duplicate row, not as an error.
  const w = await openWorld(t, 'CREATE TABLE public.ledger (entry text NOT NULL, amount numeric); ALTER TABLE public.ledger REPLICA IDENTITY FULL');
  const ledger = w.rel('ledger');
  const src = new SourceLog();
  const first = src.txn(ins(ledger, ['a', '1.10']));
  const second = src.txn(ins(ledger, ['b', '2.20']));

  const before = w.applier();
  await feed(before, ledger, first);
  await before.drain();
  await w.client.end(); // the daemon stops

  // A new daemon: a new session, resuming at what the target recorded; the source resends from an older position.
  const recorded = await w.appliedLsn();
  assert.equal(recorded, first.endLsn);
  const restarted = w.applier({}, await w.writer(), recorded);
  await feed(restarted, ledger, first, second);
  await restarted.drain();

  assert.deepEqual(await w.query('SELECT entry, amount::text FROM public.ledger ORDER BY entry'), [
    { entry: 'a', amount: '1.10' },
    { entry: 'b', amount: '2.20' },
  ]);
  assert.equal(await w.appliedLsn(), second.endLsn);
});

test("a change is applied only if its transaction committed at or after its table's copy LSN", async (t) => {
  const w = await openWorld(
    t,
    'CREATE TABLE public.copied_late (id int PRIMARY KEY, v text); CREATE TABLE public.copied_early (id int PRIMARY KEY, v text)',
  );
  const late = w.rel('copied_late');
  const early = w.rel('copied_early');
  const src = new SourceLog();
  const t1 = src.txn(ins(late, ['1', 'in the copy']), ins(early, ['1', 'after the copy']));
  const t2 = src.txn(ins(late, ['2', 'at the copy LSN']), upd(late, ['1', 'changed after the copy']));
  const t3 = src.txn(ins(late, ['3', 'after']));
  // copied_late was copied under a later snapshot, consistent at t2's commit: t1 is in its copy.
  w.runtime('copied_late').copyLsn = t2.finalLsn;

  const applier = w.applier();
  await feed(applier, late, early, t1, t2, t3);
  await applier.drain();

  // Row 1 of copied_late came with the copy, not from t1 (the copy is not part of this test).
  assert.deepEqual(await rows(w, 'copied_late'), ['(2,"at the copy LSN")', '(3,after)']);
  assert.deepEqual(await rows(w, 'copied_early'), ['(1,"after the copy")']);
  assert.equal(await w.appliedLsn(), t3.endLsn);
});

test('an UPDATE with an unchanged TOAST value leaves that column as it is on the target', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.doc (id int PRIMARY KEY, title text NOT NULL, body text, n int)');
  const doc = w.rel('doc');
  const src = new SourceLog();
  const body = (k: number) => Array.from({ length: 4000 }, (_, i) => `line ${i} of doc ${k}: ${(i * 7919) % 10007} ü`).join('\n');
  const applier = w.applier();

  await feed(applier, doc, src.txn(ins(doc, ['1', 'one', body(1), '0'])));
  await applier.drain();

  // Doc 1 was inserted in an earlier batch; doc 2 is inserted and updated in this one.
  await feed(
    applier,
    src.txn(upd(doc, ['1', 'one, renamed', UNCHANGED_TOAST, '1'])),
    src.txn(ins(doc, ['2', 'two', body(2), '0'])),
    src.txn(upd(doc, ['2', 'two, renamed', UNCHANGED_TOAST, '1'])),
    src.txn(upd(doc, ['2', 'two, renamed', UNCHANGED_TOAST, '2'])),
  );
  await applier.drain();

  const got = await w.query<{ id: number; title: string; body: string | null; n: number }>('SELECT id, title, body, n FROM public.doc ORDER BY id');
  assert.deepEqual(
    got.map((r) => ({ ...r, body: r.body === body(r.id) ? 'kept' : `${r.body?.length ?? 'NULL'} chars` })),
    [
      { id: 1, title: 'one, renamed', body: 'kept', n: 1 },
      { id: 2, title: 'two, renamed', body: 'kept', n: 2 },
    ],
  );
});

test('without a key (REPLICA IDENTITY FULL), a DELETE or UPDATE of one of identical rows changes exactly one', async (t) => {
  // One table scanned, one whose rows are found through an index on a column.
  const w = await openWorld(
    t,
    `CREATE TABLE public.tally (a int, b text); ALTER TABLE public.tally REPLICA IDENTITY FULL;
     CREATE TABLE public.tally_idx (a int, b text); ALTER TABLE public.tally_idx REPLICA IDENTITY FULL;
     CREATE INDEX ON public.tally_idx (a);`,
  );
  const applier = w.applier();
  const src = new SourceLog();
  for (const name of ['tally', 'tally_idx']) {
    const r = w.rel(name);
    await feed(applier, r, src.txn(ins(r, ['1', 'same']), ins(r, ['1', 'same']), ins(r, ['1', 'same']), ins(r, ['2', 'other'])));
    await applier.drain();
    await feed(applier, src.txn(del(r, ['1', 'same'])));
    await applier.drain();
    assert.deepEqual(await rows(w, name), ['(1,same)', '(1,same)', '(2,other)'], `${name}: one DELETE, one row gone`);
    await feed(applier, src.txn(upd(r, ['1', 'changed'], ['1', 'same'])));
    await applier.drain();
    assert.deepEqual(await rows(w, name), ['(1,changed)', '(1,same)', '(2,other)'], `${name}: one UPDATE, one row changed`);
  }
});

test('a TRUNCATE runs between the changes before and after it, in one batch', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.cart (id int PRIMARY KEY, v text)');
  const cart = w.rel('cart');
  const applier = w.applier();
  const src = new SourceLog();

  await feed(applier, cart, src.txn(ins(cart, ['1', 'old'])));
  await applier.drain();
  await feed(
    applier,
    src.txn(ins(cart, ['2', 'before the truncate'])),
    src.txn(truncate(cart)),
    src.txn(ins(cart, ['3', 'after the truncate'])),
    src.txn(upd(cart, ['3', 'after, updated'])),
  );
  await applier.drain();
  assert.deepEqual(await rows(w, 'cart'), ['(3,"after, updated")']);
});

test('an UPDATE or DELETE whose row is missing on the target is applied as the rest, and counted as a divergence', async (t) => {
  const w = await openWorld(t, 'CREATE TABLE public.note (id int PRIMARY KEY, v text)');
  const note = w.rel('note');
  const applier = w.applier();
  const src = new SourceLog();

  // Row 9 never reached the target (someone deleted it there by hand, say).
  const last = src.txn(upd(note, ['9', 'changed']), del(note, ['9', 'changed']), ins(note, ['1', 'fine']));
  await feed(applier, note, last);
  await applier.drain();

  assert.deepEqual(await rows(w, 'note'), ['(1,fine)']);
  assert.equal(await w.appliedLsn(), last.endLsn);
  const divergences = (await w.metrics.errors.get()).values.find((v) => v.labels.kind === 'divergence')?.value;
  assert.equal(divergences, 2);
  assert.equal(w.log.filter((l) => l.msg === 'rows to change were not found on the target' && l.table === 'public.note').length, 2);
});

/** Partitions two levels deep: ev_b is partitioned again. */
const PARTITIONED = `
  CREATE TABLE public.ev (id int, at date NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
  CREATE TABLE public.ev_a PARTITION OF public.ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
  CREATE TABLE public.ev_b PARTITION OF public.ev FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY RANGE (at);
  CREATE TABLE public.ev_b1 PARTITION OF public.ev_b FOR VALUES FROM ('2026-01-01') TO ('2026-07-01');
  CREATE TABLE public.ev_b2 PARTITION OF public.ev_b FOR VALUES FROM ('2026-07-01') TO ('2027-01-01');
  CREATE TABLE public.other (id int PRIMARY KEY);`;

/** Each partition's rows (id, at as text), the partitions in name order. */
async function partitionRows(w: World): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const r of await w.query<{ p: string; id: number }>('SELECT tableoid::regclass::text AS p, id FROM public.ev ORDER BY 1, 2')) (out[r.p] ??= []).push(String(r.id));
  return out;
}

const truncatesCounted = async (w: World, table: string) =>
  (await w.metrics.applyChanges.get()).values.find((v) => v.labels.table === table && v.labels.op === 'truncate')?.value ?? 0;

test("a TRUNCATE of one partition, reported by walbridge's trigger, empties the target's partition in order; after a TRUNCATE of the root or of a partition above it, nothing more", async (t) => {
  const w = await openWorld(t, PARTITIONED);
  const ev = w.rel('ev');
  const other = w.rel('other');
  const applier = w.applier({ migration: 'walbridge_test' });
  const src = new SourceLog();
  const row = (id: number, at: string) => ins(ev, [String(id), at]);
  const fill = () => [row(1, '2025-02-01'), row(2, '2026-02-01'), row(3, '2026-08-01')];

  await feed(applier, ev, other, src.txn(...fill(), ins(other, ['1'])));
  await applier.drain();

  // A leaf, between two inserts into it; another migration's report is not ours.
  await feed(applier, src.txn(row(4, '2025-03-01'), truncatedPartition('ev_a', ['ev']), row(5, '2025-04-01'), truncatedPartition('ev_b1', ['ev_b', 'ev'], 'another_migration')));
  await applier.drain();
  assert.deepEqual(await partitionRows(w), { ev_a: ['5'], ev_b1: ['2'], ev_b2: ['3'] });

  // A partition that is partitioned itself: its trigger and its leaves' fire, one statement.
  await feed(applier, src.txn(truncatedPartition('ev_b', ['ev']), truncatedPartition('ev_b1', ['ev_b', 'ev']), truncatedPartition('ev_b2', ['ev_b', 'ev'])));
  await applier.drain();
  assert.deepEqual(await partitionRows(w), { ev_a: ['5'] });
  assert.equal(await truncatesCounted(w, 'public.ev'), 2, 'ev_a, then ev_b with its leaves');

  // TRUNCATE other, ev_b1 on the source: pgoutput sends other, the trigger ev_b1.
  await feed(applier, src.txn(...fill()), src.txn(truncate(other), truncatedPartition('ev_b1', ['ev_b', 'ev']), ins(other, ['2'])));
  await applier.drain();
  assert.deepEqual(await partitionRows(w), { ev_a: ['1', '5'], ev_b2: ['3'] });
  assert.deepEqual(await rows(w, 'other'), ['(2)']);

  // TRUNCATE ev: pgoutput sends the root, then every partition's trigger fires; rows written after stay.
  await feed(applier, src.txn(truncate(ev), truncatedPartition('ev_a', ['ev']), truncatedPartition('ev_b', ['ev']), truncatedPartition('ev_b1', ['ev_b', 'ev']), truncatedPartition('ev_b2', ['ev_b', 'ev']), row(6, '2026-09-01')));
  await applier.drain();
  assert.deepEqual(await partitionRows(w), { ev_b2: ['6'] });
  assert.equal(await truncatesCounted(w, 'public.ev'), 4, 'ev_b1, then the root once');

  // A transaction before the root's copy LSN is in its copy: its TRUNCATE of a partition is not applied again.
  const early = src.txn(truncatedPartition('ev_b2', ['ev_b', 'ev']));
  const late = src.txn(row(7, '2025-05-01'));
  w.runtime('ev').copyLsn = late.finalLsn;
  await feed(applier, early, late);
  await applier.drain();
  assert.deepEqual(await partitionRows(w), { ev_a: ['7'], ev_b2: ['6'] });
  assert.equal(await w.appliedLsn(), late.endLsn);
});

test('a TRUNCATE of a partition the target lacks stops the apply, naming it and the fix; once it exists there, it is applied', async (t) => {
  const w = await openWorld(t, PARTITIONED);
  const ev = w.rel('ev');
  const src = new SourceLog();
  const first = w.applier();
  await feed(first, ev, src.txn(ins(ev, ['1', '2025-02-01'])));
  await first.drain();
  const before = await w.appliedLsn();

  // A table of that name, but not a partition of public.ev: it is not touched.
  const stray = src.txn(truncatedPartition('other', ['ev']));
  for (const txn of [stray, src.txn(truncatedPartition('ev_c', ['ev']), ins(ev, ['2', '2027-03-01']))]) {
    const applier = w.applier({}, w.client, before);
    await w.query('INSERT INTO public.other VALUES (1) ON CONFLICT DO NOTHING');
    await assert.rejects(
      (async () => {
        await feed(applier, ev, txn);
        await applier.drain();
      })(),
      (err: unknown) => {
        assert.ok(err instanceof WalbridgeError, String(err));
        assert.equal(err.kind, 'schema');
        const partition = txn === stray ? 'public.other' : 'public.ev_c';
        assert.match(err.message, new RegExp(`the source truncated ${partition}, a partition of public\\.ev, but the target has no partition ${partition} of public\\.ev`));
        assert.match(err.hint ?? '', new RegExp(`Create ${partition} on the target as a partition of public\\.ev.*walbridge schema --dry-run`));
        return true;
      },
    );
    await applier.rollback();
    assert.equal(await w.appliedLsn(), before, 'nothing of that transaction applied');
  }
  assert.deepEqual(await rows(w, 'other'), ['(1)']);

  // The operator creates it (with a row there that the source's TRUNCATE removed); the same transaction, sent again, goes through.
  await w.query("CREATE TABLE public.ev_c PARTITION OF public.ev FOR VALUES FROM ('2027-01-01') TO ('2028-01-01'); INSERT INTO public.ev VALUES (9, '2027-01-02')");
  const again = w.applier({}, w.client, before);
  const redo = src.txn(truncatedPartition('ev_c', ['ev']), ins(ev, ['2', '2027-03-01']));
  await feed(again, ev, redo);
  await again.drain();
  assert.deepEqual(await partitionRows(w), { ev_a: ['1'], ev_c: ['2'] });
  assert.equal(await w.appliedLsn(), redo.endLsn);
});
