/**
 * The COPY relay (src/backfill/relay.ts) between two real servers (15 -> 17): the source's
 * CopyData messages go to the target as they came, so what matters is that every row arrives
 * exactly once and whole (rows far larger than a socket read included), that the counts are
 * right, and that a failure on either side ends the copy at once with that side's error
 * instead of leaving it waiting.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { relayCopy, type RelayOptions, type RelayProgress } from '../../src/backfill/relay.js';
import { startPair, type Cluster } from '../harness/cluster.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;

const TABLE = `CREATE TABLE t (id int PRIMARY KEY, body text, j jsonb, b bytea)`;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17 }));
  await source.query(TABLE);
  await source.query(`
    INSERT INTO t
    SELECT g,
           CASE WHEN g % 1000 = 0 THEN repeat('long row ü ', 30000) ELSE E'row\\t' || g || E'\\nwith newline \\\\ backslash' END,
           jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x')),
           decode(md5(g::text), 'hex')
      FROM generate_series(1, 20000) g`);
  await target.query(TABLE);
  await target.query(`CREATE TABLE t_checked (LIKE t, CHECK (id <> 4242))`);
});

after(async () => {
  await destroy();
});

async function clients(): Promise<[pg.Client, pg.Client]> {
  const s = new pg.Client({ connectionString: source.url() });
  const t = new pg.Client({ connectionString: target.url() });
  await Promise.all([s.connect(), t.connect()]);
  return [s, t];
}

const md5Of = async (c: Cluster) =>
  (await c.query<{ h: string; n: string }>(`SELECT md5(string_agg(t::text, '|' ORDER BY id)) AS h, count(*)::text AS n FROM t`))[0];

test('every row arrives once and whole, large rows included; rows and bytes are counted', async () => {
  const [s, t] = await clients();
  try {
    await t.query('BEGIN');
    let progressRows = 0;
    const done = await relayCopy(s, t, 'COPY t TO STDOUT', 'COPY t FROM STDIN', { onProgress: (d) => (progressRows += d.rows) });
    await t.query('COMMIT');
    assert.equal(done.rows, 20000);
    assert.equal(progressRows, 20000, 'progress adds up to the rows copied');
    const [{ bytes }] = (await source.query<{ bytes: string }>(`SELECT sum(octet_length(x) + 1)::text AS bytes FROM (SELECT t::text FROM t) s(x)`)) as [{ bytes: string }];
    assert.ok(done.bytes > Number(bytes) * 0.9, `bytes counted: ${done.bytes}`);
    assert.deepEqual(await md5Of(target), await md5Of(source));
    // Both connections are usable afterwards: pg got them back in a clean state.
    assert.equal((await s.query('SELECT 1 AS one')).rows[0].one, 1);
    assert.equal((await t.query('SELECT 1 AS one')).rows[0].one, 1);
  } finally {
    await Promise.all([s.end(), t.end()]);
    await target.query('TRUNCATE t');
  }
});

/** One relayed copy of t into the target, committed; the target's t is emptied again after `check`. */
async function relayOnce(copyOut: string, copyIn: string, opts: RelayOptions, check: (done: RelayProgress, seconds: number) => Promise<void>): Promise<void> {
  const [s, t] = await clients();
  try {
    await t.query('BEGIN');
    const started = process.hrtime.bigint();
    const done = await relayCopy(s, t, copyOut, copyIn, opts);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    await t.query('COMMIT');
    await check(done, seconds);
  } finally {
    await Promise.all([s.end(), t.end()]);
    await target.query('TRUNCATE t');
  }
}

test('in binary format too, every row arrives once and rows are counted (header and trailer are not rows)', async () => {
  let progressRows = 0;
  const binary = ' WITH (FORMAT binary)';
  await relayOnce(`COPY t TO STDOUT${binary}`, `COPY t FROM STDIN${binary}`, { format: 'binary', onProgress: (d) => (progressRows += d.rows) }, async (done) => {
    assert.equal(done.rows, 20000);
    assert.equal(progressRows, 20000, 'progress adds up to the rows copied');
    assert.deepEqual(await md5Of(target), await md5Of(source));
  });
});

test('a rate cap holds the copy to it (WALBRIDGE_COPY_MAX_MBPS), and every row still arrives', async () => {
  const cap = 2 * 1024 * 1024;
  await relayOnce('COPY t TO STDOUT', 'COPY t FROM STDIN', { maxBytesPerSecond: cap }, async (done, seconds) => {
    // A lower bound only: the cap may be undershot on a slow machine, never overshot. It lets
    // the first socket read (up to 64 KB) through before it starts waiting.
    const floor = (done.bytes - 64 * 1024) / cap;
    assert.ok(seconds >= floor * 0.95, `${done.bytes} bytes took ${seconds.toFixed(2)} s at a cap of 2 MB/s (at least ${floor.toFixed(2)} s expected)`);
    assert.deepEqual(await md5Of(target), await md5Of(source));
  });
});

/** The copy fails with `error`, and `table` on the target holds nothing of it. */
async function assertCopyFails(copyOut: string, copyIn: string, error: RegExp, table: string): Promise<void> {
  const [s, t] = await clients();
  try {
    await t.query('BEGIN');
    await assert.rejects(relayCopy(s, t, copyOut, copyIn), (err: Error) => error.test(err.message));
  } finally {
    s.end().catch(() => {});
    t.end().catch(() => {});
  }
  assert.equal((await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${table}`))[0]?.n, '0', 'nothing half-written');
}

test("a row the target refuses ends the copy at once with the target's error", async () => {
  await assertCopyFails('COPY t TO STDOUT', 'COPY t_checked FROM STDIN', /check constraint/i, 't_checked');
});

test("a failure on the source mid-copy ends the copy with the source's error", async () => {
  await assertCopyFails('COPY (SELECT id, body, j, b FROM t WHERE 1 / (id - 15000) IS NOT NULL) TO STDOUT', 'COPY t FROM STDIN', /division by zero/, 't');
});
