/**
 * WALBRIDGE_CONVERT end to end (issue 15, docs/conversions.md), on a 15 → 17 pair: pgvector's
 * `vector` on the source carried into `bytea` (float32, little-endian) and `real[]` on the target,
 * and a source-only column declared `drop`. What a user checks: preflight names the conversion
 * and tries it on real rows; `walbridge schema` makes the new types; the copy and the stream
 * (through a SIGKILL in each) give on the target exactly the bytes numpy would write; verify
 * finds one flipped byte; and after cutover the way back turns float32 bytes into the text
 * pgvector prints.
 *
 * The test servers have no pgvector: the source's `public.vector` is a stand-in, a domain over
 * text with pgvector's text form ('[1,2.5,-3e-07]'); conversions read any type named `vector`.
 * Every vector text is written in the form pgvector prints (float4's shortest output), so the way
 * back must give the very same text.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { startPair, type Cluster } from '../harness/cluster.js';
import { waitFor } from '../harness/lsn.js';
import { CLI, runCli, startDaemon, type DaemonProcess } from '../helpers/daemon.js';
import { pipelineRow, tableRows, waitForPhase } from '../helpers/state.js';

let source: Cluster;
let target: Cluster;
let destroy: () => Promise<void>;
const daemons: DaemonProcess[] = [];
const writers: { stop(): Promise<unknown> }[] = [];

const CONVERT = [
  'public.mem.embedding=vector_to_float32le',
  'public.mem.emb_arr=vector_to_real_array',
  'public.mem.secret=drop',
  'public.bulk.embedding=vector_to_float32le',
].join(';');

/** Rows of public.bulk: enough (about 20 MB of vector text) that a slowed copy can be cut. */
const BULK_ROWS = 30_000;
const BULK_DIMS = 64;
/** The TOASTed row: pgvector's largest vector. */
const BIG_ID = 7;
const BIG_DIMS = 16_000;

/** Errors the daemon logged (warnings, such as the unsampled WAL rate, are not failures here). */
function failuresOf(d: DaemonProcess): string {
  return d
    .logs()
    .filter((l) => l.level === 'error' || l.level === 'fatal')
    .map((l) => `${l.level}: ${l.msg ?? ''} ${JSON.stringify(l.err ?? '')}`)
    .join('\n');
}

/**
 * waitForCatchUp, failing at once with the daemon's errors if it reports one (it would otherwise
 * wait in phase "error" and retry until the deadline).
 */
async function catchUp(from: Cluster, to: Cluster, d: DaemonProcess): Promise<void> {
  const [{ lsn } = { lsn: '0/0' }] = await from.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  let failed = '';
  await waitFor(
    async () => {
      failed = failuresOf(d);
      if (failed !== '') return true;
      const [r] = await to.query<{ done: boolean }>(`SELECT applied_lsn >= $1::pg_lsn AS done FROM walbridge.pipeline WHERE phase = 'streaming'`, [lsn]);
      return r?.done === true;
    },
    { what: `the daemon to apply up to ${lsn}`, timeoutMs: 120_000, intervalMs: 100 },
  );
  if (failed !== '') throw new Error(`the daemon failed while catching up to ${lsn}:\n${failed}`);
}

const env = (extra: Record<string, string> = {}): Record<string, string> => ({
  SOURCE_DATABASE_URL: source.url(),
  TARGET_DATABASE_URL: target.url(),
  WALBRIDGE_CONVERT: CONVERT,
  ...extra,
});

// ---------------------------------------------------------------------------------------------
// The reference: what numpy's .astype(np.float32).tobytes() gives, computed here in JavaScript
// ---------------------------------------------------------------------------------------------

/** The elements of pgvector's text, each as the float32 it holds (Number keeps '-0' negative). */
function elements(text: string): number[] {
  assert.match(text, /^\[.*\]$/s, `pgvector text: ${text.slice(0, 40)}`);
  const inner = text.slice(1, -1);
  return inner === '' ? [] : inner.split(',').map((x) => Math.fround(Number(x)));
}

function float32le(text: string): Buffer {
  const xs = elements(text);
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => b.writeFloatLE(x, 4 * i));
  return b;
}

/** real[]'s elements as float4send prints them (big-endian hex), one after another. */
function float32beHex(text: string): string {
  const xs = elements(text);
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => b.writeFloatBE(x, 4 * i));
  return b.toString('hex');
}

function bytesOf(xs: number[]): Buffer {
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => b.writeFloatLE(x, 4 * i));
  return b;
}

// ---------------------------------------------------------------------------------------------
// Data
// ---------------------------------------------------------------------------------------------

/**
 * Random vectors in pgvector's text form: magnitudes from 1e-30 to 1e30, and now and then a
 * value at an edge (±0, subnormals, the largest and smallest normal float4). Each element goes
 * through float4, so its text is float4's shortest output, the form pgvector prints.
 */
const GEN = `
CREATE SCHEMA testgen;
CREATE FUNCTION testgen.vec(n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT '[' || string_agg(
    CASE WHEN random() < 0.05
         THEN ((ARRAY['-0', '0', '1e-45', '-3e-39', '3.4028235e+38', '-1.1754944e-38', '1.1754942e-38'])[1 + floor(random() * 7)::int])::float4
         ELSE ((random() - 0.5) * power(10::float8, floor(random() * 61) - 30))::float4 END::text,
    ',') || ']'
  FROM generate_series(1, n)
$$;
CREATE FUNCTION testgen.vec_of(xs float4[]) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT '[' || array_to_string(xs, ',') || ']' $$;
`;

const SCHEMA = `
CREATE DOMAIN public.vector AS text CHECK (VALUE ~ '^\\[[^]]*\\]$');
CREATE TABLE public.mem (
  id int8 PRIMARY KEY,
  note text,
  embedding public.vector,
  emb_arr public.vector,
  secret text
);
CREATE INDEX mem_emb_arr ON public.mem (emb_arr);
CREATE TABLE public.bulk (
  id int8 PRIMARY KEY,
  embedding public.vector NOT NULL
);
`;

/** The edge values, one row each, written as float4 prints them. */
const EDGE_ROWS = `
INSERT INTO public.mem (id, note, embedding, emb_arr, secret) VALUES
  (1, 'zeros', testgen.vec_of('{0,-0}'), testgen.vec_of('{-0,0}'), 's1'),
  (2, 'largest normal', testgen.vec_of('{3.4028235e+38,-3.4028235e+38}'), testgen.vec_of('{3.4028235e+38}'), 's2'),
  (3, 'smallest normal', testgen.vec_of('{1.1754944e-38,-1.1754944e-38}'), testgen.vec_of('{-1.1754944e-38}'), 's3'),
  (4, 'subnormals', testgen.vec_of('{1e-45,-1e-45,3e-39,1.1754942e-38}'), testgen.vec_of('{1e-45,3e-39}'), 's4'),
  (5, 'plain', testgen.vec_of('{1,2.5,-3e-07,0.1,123456.79}'), testgen.vec_of('{1,2.5}'), 's5'),
  (6, 'nulls', NULL, NULL, NULL),
  (${BIG_ID}, 'toasted', testgen.vec(${BIG_DIMS}), testgen.vec(3), 's7'),
  (8, 'one element', testgen.vec_of('{-1}'), testgen.vec_of('{-1}'), 's8');
`;

before(async () => {
  ({ source, target, destroy } = await startPair({ sourceMajor: 15, targetMajor: 17, namePrefix: 'convert' }));
  await source.withClient(async (c) => {
    await c.query(GEN);
    await c.query(SCHEMA);
    await c.query(EDGE_ROWS);
    await c.query(`INSERT INTO public.bulk SELECT g, testgen.vec(${BULK_DIMS}) FROM generate_series(1, ${BULK_ROWS}) g`);
    await c.query('ANALYZE');
  });
});

after(async () => {
  await Promise.all(writers.map((w) => w.stop().catch(() => undefined)));
  for (const d of daemons) d.kill('SIGKILL');
  await destroy?.();
});

// ---------------------------------------------------------------------------------------------
// Comparing the target with the reference
// ---------------------------------------------------------------------------------------------

interface SourceRow {
  id: string;
  note?: string | null;
  e: string | null;
  a?: string | null;
}
interface TargetRow {
  id: string;
  note?: string | null;
  e: Buffer | null;
  a?: string | null;
  a_null?: boolean;
}

/** Every row of both tables: the target holds exactly the reference's bytes, NULL for NULL; no row lost or doubled. */
async function assertTargetIsReference(): Promise<void> {
  const [srcMem, tgtMem, srcBulk, tgtBulk] = await Promise.all([
    source.query<SourceRow>('SELECT id::text, note, embedding::text AS e, emb_arr::text AS a FROM public.mem ORDER BY id'),
    target.query<TargetRow>(
      `SELECT id::text, note, embedding AS e, emb_arr IS NULL AS a_null,
              (SELECT string_agg(encode(float4send(x), 'hex'), '' ORDER BY o) FROM unnest(emb_arr) WITH ORDINALITY AS u(x, o)) AS a
         FROM public.mem ORDER BY id`,
    ),
    source.query<SourceRow>('SELECT id::text, embedding::text AS e FROM public.bulk ORDER BY id'),
    target.query<TargetRow>('SELECT id::text, embedding AS e FROM public.bulk ORDER BY id'),
  ]);
  for (const [table, src, tgt] of [
    ['public.mem', srcMem, tgtMem],
    ['public.bulk', srcBulk, tgtBulk],
  ] as const) {
    assert.equal(tgt.length, src.length, `${table}: ${tgt.length} rows on the target, ${src.length} on the source`);
    assert.deepEqual(
      tgt.map((r) => r.id),
      src.map((r) => r.id),
      `${table}: the same keys, each once`,
    );
    const wrong: string[] = [];
    src.forEach((s, i) => {
      const t = tgt[i] as TargetRow;
      const problems: string[] = [];
      if (s.e === null) {
        if (t.e !== null) problems.push(`embedding: NULL on the source, ${t.e.length} bytes on the target`);
      } else if (t.e === null) {
        problems.push('embedding: NULL on the target');
      } else {
        const want = float32le(s.e);
        if (!want.equals(t.e)) {
          const at = [...want].findIndex((b, k) => t.e?.[k] !== b);
          problems.push(`embedding: ${t.e.length} bytes, expected ${want.length}; first difference at byte ${at} (element ${Math.floor(at / 4) + 1})`);
        }
      }
      if (table === 'public.mem') {
        if (t.note !== s.note) problems.push(`note: ${JSON.stringify(t.note)}, expected ${JSON.stringify(s.note)}`);
        if (s.a === null || s.a === undefined) {
          if (!t.a_null) problems.push('emb_arr: not NULL on the target');
        } else if (t.a !== float32beHex(s.a)) {
          problems.push(`emb_arr: ${t.a}, expected ${float32beHex(s.a)} (${s.a})`);
        }
      }
      if (problems.length > 0) wrong.push(`${table} id ${s.id}: ${problems.join('; ')}`);
    });
    assert.deepEqual(wrong.slice(0, 10), [], `${wrong.length} row(s) of ${table} differ from the JavaScript reference`);
  }
}

/** Writes of the app on the source: inserts, updates of the vectors, deletes, on both tables. */
function startWriter(url: string, from: number): { stop(): Promise<number>; readonly rounds: number } {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined);
  let running = true;
  let rounds = 0;
  let failure: unknown = null;
  const loop = (async () => {
    await c.connect();
    try {
      while (running) {
        const base = from + rounds * 10;
        await c.query('BEGIN');
        await c.query(`INSERT INTO public.bulk SELECT g, testgen.vec(${BULK_DIMS}) FROM generate_series($1::int8, $1::int8 + 9) g`, [base]);
        await c.query(`UPDATE public.bulk SET embedding = testgen.vec(${BULK_DIMS}) WHERE id IN ($1, $2, $3)`, [1 + ((rounds * 37) % BULK_ROWS), 2 + ((rounds * 53) % BULK_ROWS), base + 3]);
        await c.query('DELETE FROM public.bulk WHERE id IN ($1, $2)', [3 + ((rounds * 71) % BULK_ROWS), base + 5]);
        await c.query('COMMIT');
        // The TOASTed row: another column changes, the vector does not (sent as unchanged TOAST).
        await c.query('UPDATE public.mem SET note = $1 WHERE id = $2', [`round ${rounds}`, BIG_ID]);
        // Only the dropped column changes.
        await c.query('UPDATE public.mem SET secret = $1 WHERE id = 5', [`secret ${rounds}`]);
        // A row of mem that comes and goes, its vectors changed in between.
        await c.query(`INSERT INTO public.mem (id, note, embedding, emb_arr, secret) VALUES ($1, 'writer', testgen.vec(8), testgen.vec(2), 'w')`, [base]);
        await c.query('UPDATE public.mem SET embedding = testgen.vec(5), emb_arr = NULL WHERE id = $1', [base]);
        if (rounds % 2 === 1) await c.query('DELETE FROM public.mem WHERE id = $1', [base - 10]);
        rounds++;
      }
    } catch (err) {
      failure = err;
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    get rounds() {
      return rounds;
    },
    async stop() {
      running = false;
      await loop;
      if (failure) throw failure instanceof Error ? failure : new Error(String(failure));
      return rounds;
    },
  };
}

interface Check {
  id: string;
  status: string;
  message: string;
  fix?: string;
}

async function preflight(extra: Record<string, string>): Promise<{ code: number | null; checks: Check[]; ok: boolean }> {
  const r = await runCli(['preflight', '--json', '--sample-seconds', '1'], { ...env(), ...extra });
  try {
    const report = JSON.parse(r.stdout) as { ok: boolean; checks: Check[] };
    return { code: r.code, checks: report.checks, ok: report.ok };
  } catch {
    throw new Error(`preflight printed no JSON (exit ${r.code}):\n${r.out}`);
  }
}

function check(checks: Check[], id: string): Check {
  const c = checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${checks.map((x) => x.id).join(', ')}`);
  return c;
}

// ---------------------------------------------------------------------------------------------
// The tests, in order: each starts where the one before left the pair
// ---------------------------------------------------------------------------------------------

test('the JavaScript reference is what numpy writes', () => {
  assert.equal(float32le('[1,2.5]').toString('hex'), '0000803f00002040');
  assert.equal(float32le('[-0]').toString('hex'), '00000080');
  assert.equal(float32le('[0]').toString('hex'), '00000000');
  assert.equal(float32le('[1e-45]').toString('hex'), '01000000');
  assert.equal(float32le('[3.4028235e+38]').toString('hex'), 'ffff7f7f');
  assert.equal(float32le('[1.1754944e-38]').toString('hex'), '00008000');
  assert.equal(float32le('[1.1754942e-38]').toString('hex'), 'ffff7f00');
});

test('walbridge schema with WALBRIDGE_CONVERT makes the converted columns with their new types, not the stand-in', { timeout: 60_000 }, async () => {
  const r = await runCli(['schema', '--json'], env());
  assert.equal(r.code, 0, r.out);
  const plan = JSON.parse(r.stdout) as { leftOut: { kind: string; name: string; reason: string }[] };
  const columns = await target.query<{ t: string; c: string; type: string }>(
    `SELECT c.relname AS t, a.attname AS c, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = 'public' AND c.relname IN ('mem', 'bulk') AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY c.relname, a.attnum`,
  );
  assert.deepEqual(
    columns.map((x) => `${x.t}.${x.c} ${x.type}`),
    ['bulk.id bigint', 'bulk.embedding bytea', 'mem.id bigint', 'mem.note text', 'mem.embedding bytea', 'mem.emb_arr real[]'],
    'vector → bytea and real[]; the dropped column is not made',
  );
  const [domain] = await target.query<{ n: string }>(`SELECT count(*)::text AS n FROM pg_type WHERE typname = 'vector'`);
  assert.equal(domain?.n, '0', 'the stand-in type is not made on the target: only converted columns used it');
  const index = plan.leftOut.find((x) => x.kind === 'index' && x.name.endsWith('mem_emb_arr'));
  assert.ok(index, `the index on the converted column is left out, and said so: ${JSON.stringify(plan.leftOut)}`);
  assert.match(index.reason, /emb_arr/);
});

test('preflight: the fitting conversion is named; declared, it is tried on real rows and a value that does not convert is named by its key', { timeout: 90_000 }, async () => {
  const without = await preflight({ WALBRIDGE_CONVERT: '' });
  assert.equal(without.code, 1);
  const tables = check(without.checks, 'target-tables');
  assert.equal(tables.status, 'fail', tables.message);
  assert.ok(tables.message.includes('WALBRIDGE_CONVERT="public.mem.embedding=vector_to_float32le"'), tables.message);
  assert.ok(tables.message.includes('WALBRIDGE_CONVERT="public.bulk.embedding=vector_to_float32le"'), tables.message);
  assert.ok(tables.message.includes('WALBRIDGE_CONVERT="public.mem.emb_arr=vector_to_real_array"'), tables.message);

  const declared = await preflight({});
  assert.equal(declared.code, 0, JSON.stringify(declared.checks.filter((c) => c.status === 'fail')));
  assert.equal(declared.ok, true);
  assert.equal(check(declared.checks, 'target-tables').status, 'pass', check(declared.checks, 'target-tables').message);
  const conversions = check(declared.checks, 'conversions');
  assert.equal(conversions.status, 'pass', conversions.message);
  assert.match(conversions.message, /public\.mem\.embedding \(vector_to_float32le, 7 value\(s\) tried\)/);
  assert.match(conversions.message, /public\.mem\.emb_arr \(vector_to_real_array, 7 value\(s\) tried\)/);
  assert.match(conversions.message, /public\.bulk\.embedding \(vector_to_float32le, \d+ value\(s\) tried\)/);
  assert.match(conversions.message, /left on the source \(drop\): public\.mem\.secret/);

  // A value the stand-in's check lets in but that is no vector of floats.
  await source.query(`INSERT INTO public.mem (id, note, embedding) VALUES (999, 'broken', '[1,abc]')`);
  try {
    const bad = await preflight({});
    assert.equal(bad.code, 1);
    const failed = check(bad.checks, 'conversions');
    assert.equal(failed.status, 'fail', failed.message);
    assert.match(failed.message, /public\.mem\.embedding \(vector_to_float32le\): the row with key \(999\) does not convert/);
    assert.match(failed.message, /abc/);
  } finally {
    await source.query('DELETE FROM public.mem WHERE id = 999');
  }
});

test('the copy, cut by SIGKILL in the middle of the converted table, gives the reference bytes; then the stream', { timeout: 180_000 }, async () => {
  const [size] = await source.query<{ toasted: number; text: number }>(
    `SELECT pg_column_size(embedding) AS toasted, octet_length(embedding::text) AS text FROM public.mem WHERE id = ${BIG_ID}`,
  );
  assert.ok((size?.text ?? 0) > 100_000 && (size?.toasted ?? 0) > 8192, `the ${BIG_DIMS}-dimension vector is TOASTed: ${JSON.stringify(size)}`);

  const slow = await startDaemon(env({ WALBRIDGE_COPY_MAX_MBPS: '1.5', WALBRIDGE_COPY_JOBS: '1' }));
  daemons.push(slow);
  await waitFor(
    async () => {
      const bulk = (await tableRows(target)).find((t) => t.table === 'public.bulk');
      return bulk?.state === 'copying' && Number(bulk.rows_copied) > 0;
    },
    { what: 'the copy of public.bulk to be under way', timeoutMs: 90_000, intervalMs: 50 },
  );
  // Changes while the copy runs: they wait in the spool and come after it.
  await source.query(`UPDATE public.mem SET note = 'changed during the copy' WHERE id = ${BIG_ID}`);
  await source.query(`UPDATE public.mem SET embedding = testgen.vec_of('{-0,1e-45,42}') WHERE id = 8`);
  await source.query(`UPDATE public.bulk SET embedding = testgen.vec(${BULK_DIMS}) WHERE id IN (10, 20000)`);
  slow.kill('SIGKILL');
  await slow.exited;
  const cut = (await tableRows(target)).find((t) => t.table === 'public.bulk');
  assert.equal(cut?.state, 'copying', 'killed in the middle of the converted table');
  assert.equal((await pipelineRow(target))?.phase, 'backfill');

  const d = await startDaemon(env());
  daemons.push(d);
  await waitForPhase(target, 'streaming', { daemon: d, timeoutMs: 120_000 });
  await catchUp(source, target, d);
  await assertTargetIsReference();
  assert.equal(failuresOf(d), '', 'no error');
});

test('the stream: inserts, vector updates, unchanged TOAST, dropped column, deletes, through a SIGKILL under writes', { timeout: 180_000 }, async () => {
  let d = daemons.at(-1) as DaemonProcess;
  // By hand first, each kind of change once.
  await source.query(
    `INSERT INTO public.mem (id, note, embedding, emb_arr, secret) VALUES
       (100, 'streamed edges', testgen.vec_of('{-0,0,1e-45,-3e-39,3.4028235e+38,-1.1754944e-38}'), testgen.vec_of('{1.1754942e-38,-0}'), 'x'),
       (101, 'streamed null', NULL, NULL, 'y'),
       (102, 'streamed big', testgen.vec(${BIG_DIMS}), testgen.vec(4), 'z')`,
  );
  await source.query(`UPDATE public.mem SET embedding = testgen.vec_of('{2,-2.5}'), emb_arr = testgen.vec_of('{7}') WHERE id = 1`);
  await source.query(`UPDATE public.mem SET embedding = NULL WHERE id = 2`);
  await source.query(`UPDATE public.mem SET embedding = testgen.vec_of('{3e-39}'), emb_arr = testgen.vec_of('{-1e-45}') WHERE id = 6`);
  await source.query(`UPDATE public.mem SET note = 'only the note' WHERE id IN (${BIG_ID}, 102)`);
  await source.query(`UPDATE public.mem SET secret = 'only the dropped column' WHERE id = 3`);
  await source.query(`DELETE FROM public.mem WHERE id = 4`);
  await source.query(`DELETE FROM public.bulk WHERE id BETWEEN 100 AND 199`);
  await catchUp(source, target, d);
  await assertTargetIsReference();
  const [big] = await target.query<{ note: string; n: number }>(`SELECT note, length(embedding) AS n FROM public.mem WHERE id = ${BIG_ID}`);
  assert.deepEqual(big, { note: 'only the note', n: 4 * BIG_DIMS }, 'the unchanged TOASTed vector is kept');

  // Under writes, a SIGKILL once the target has applied some of them.
  const writer = startWriter(source.url(), 1_000_000);
  writers.push(writer);
  const from = (await pipelineRow(target))?.applied_lsn;
  await waitFor(() => writer.rounds >= 20, { what: 'the writer to write', timeoutMs: 60_000 });
  await waitFor(
    async () => {
      const [r] = await target.query<{ moved: boolean }>('SELECT applied_lsn > $1::pg_lsn AS moved FROM walbridge.pipeline', [from]);
      return r?.moved === true;
    },
    { what: 'the target to apply some of the writes', timeoutMs: 60_000 },
  );
  d.kill('SIGKILL');
  await d.exited;
  const killedAt = writer.rounds;
  d = await startDaemon(env());
  daemons.push(d);
  await waitFor(() => writer.rounds >= killedAt + 20, { what: 'more writes after the restart', timeoutMs: 60_000 });
  const rounds = await writer.stop();
  writers.splice(writers.indexOf(writer), 1);
  await catchUp(source, target, d);
  await assertTargetIsReference();
  assert.equal(failuresOf(d), '', 'no error');
  const cols = await target.query<{ c: string }>(`SELECT column_name AS c FROM information_schema.columns WHERE table_name = 'mem' AND column_name = 'secret'`);
  assert.deepEqual(cols, [], 'the dropped column is still absent on the target');
  console.log(`# the writer ran ${rounds} rounds`);

  // walbridge status shows each table's converted columns (the page reads the same report).
  const status = await runCli(['status', '--json'], env());
  const report = JSON.parse(status.stdout) as { tables: { table: string; conversions: Record<string, string> }[] };
  assert.deepEqual(report.tables.find((t) => t.table === 'public.mem')?.conversions, { embedding: 'vector_to_float32le', emb_arr: 'vector_to_real_array', secret: 'drop' });
  const text = await runCli(['status'], env());
  assert.match(text.stdout, /converted: embedding \(vector_to_float32le\), emb_arr \(vector_to_real_array\), secret \(drop\)/);
});

test('walbridge verify reads the source through the conversion: equal, then one flipped byte is named by its key', { timeout: 120_000 }, async () => {
  const verify = () => runCli(['verify', '--json'], env());
  const ok = await verify();
  assert.equal(ok.code, 0, ok.out);

  const [row] = await target.query<{ b: number }>(`SELECT get_byte(embedding, 4 * 9000 + 2) AS b FROM public.mem WHERE id = ${BIG_ID}`);
  const original = row?.b as number;
  await target.query(`UPDATE public.mem SET embedding = set_byte(embedding, 4 * 9000 + 2, $1) WHERE id = ${BIG_ID}`, [original ^ 1]);
  try {
    const bad = await verify();
    assert.equal(bad.code, 1, bad.out);
    const report = JSON.parse(bad.stdout) as { tables: { table: string; status: string; differences: { key: string[]; kind: string }[] }[] };
    const mem = report.tables.find((t) => t.table === 'public.mem');
    assert.equal(mem?.status, 'different', bad.out);
    assert.deepEqual(mem?.differences, [{ key: [String(BIG_ID)], kind: 'changed' }]);
    assert.ok(report.tables.filter((t) => t.table !== 'public.mem').every((t) => t.status === 'equal'), bad.out);
  } finally {
    await target.query(`UPDATE public.mem SET embedding = set_byte(embedding, 4 * 9000 + 2, $1) WHERE id = ${BIG_ID}`, [original]);
  }
  const again = await verify();
  assert.equal(again.code, 0, again.out);
});

test('cutover, then the way back: float32 bytes written on the new database arrive on the old one as the text pgvector prints', { timeout: 180_000 }, async () => {
  const d = daemons.at(-1) as DaemonProcess;
  const before = new Map((await source.query<SourceRow>('SELECT id::text, embedding::text AS e, emb_arr::text AS a FROM public.mem')).map((r) => [r.id, r]));
  const r = await runCli(['cutover', '--timeout', '60'], env());
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /Cutover done at/);
  assert.equal((await d.exited).code, 0);

  const rev = await startDaemon(env(), { script: CLI, args: ['run', '--reverse'] });
  daemons.push(rev);
  await waitForPhase(source, 'streaming', { daemon: rev, timeoutMs: 90_000 });

  // The app now writes float32 bytes on the new database.
  const edges = [-0, 1e-45, 3.4028235e38, 1.1754944e-38, -3e-39, 0];
  await target.query(`INSERT INTO public.mem (id, note, embedding, emb_arr) VALUES (5000, 'from the new database', $1, '{1,2.5}')`, [bytesOf([1, 2.5])]);
  await target.query(`INSERT INTO public.mem (id, note, embedding, emb_arr) VALUES (5001, 'edges', $1, $2::real[])`, [bytesOf(edges), ['-0', '1e-45', '3e-39']]);
  await target.query(`INSERT INTO public.mem (id, note, embedding, emb_arr) VALUES (5002, 'nulls', NULL, NULL)`);
  // Every vector rewritten, the 64 kB ones too (a new value, not an unchanged TOAST pointer; the
  // small arrays are always sent whole): the old database gets back the very text it had.
  await target.query(`UPDATE public.mem SET embedding = embedding || ''::bytea, emb_arr = emb_arr WHERE id < 5000`);
  await target.query('DELETE FROM public.bulk WHERE id BETWEEN 1 AND 10');
  await target.query(`UPDATE public.bulk SET embedding = $1 WHERE id = 11`, [bytesOf([0.5, -0])]);
  await catchUp(target, source, rev);

  const back = new Map((await source.query<SourceRow & { secret: string | null }>('SELECT id::text, embedding::text AS e, emb_arr::text AS a, secret FROM public.mem')).map((x) => [x.id, x]));
  assert.deepEqual(back.get('5000'), { id: '5000', e: '[1,2.5]', a: '[1,2.5]', secret: null });
  assert.deepEqual(back.get('5001'), { id: '5001', e: '[-0,1e-45,3.4028235e+38,1.1754944e-38,-3e-39,0]', a: '[-0,1e-45,3e-39]', secret: null });
  assert.deepEqual(back.get('5002'), { id: '5002', e: null, a: null, secret: null });
  const changed: string[] = [];
  for (const [id, was] of before) {
    const now = back.get(id);
    if (now?.e !== was.e || now?.a !== was.a) changed.push(`id ${id}: ${JSON.stringify(now).slice(0, 120)} (was ${JSON.stringify(was).slice(0, 120)})`);
  }
  assert.deepEqual(changed, [], 'float32 → vector text gives back exactly the text each vector had');
  const bulk = await source.query<{ id: string; e: string }>('SELECT id::text, embedding::text AS e FROM public.bulk WHERE id <= 11 ORDER BY id');
  assert.deepEqual(bulk, [{ id: '11', e: '[0.5,-0]' }]);

  const v = await runCli(['verify', '--reverse', '--json'], env());
  assert.equal(v.code, 0, v.out);
  assert.equal(failuresOf(rev), '', 'no error on the way back');
  await rev.stop();
});
