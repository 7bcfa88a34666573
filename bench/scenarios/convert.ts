/**
 * A converted column (WALBRIDGE_CONVERT, docs/conversions.md): a table shaped like the app's
 * mirt_memories, its `embedding` a pgvector `vector` of 1536 dimensions (OpenAI's), copied and
 * streamed by walbridge twice, side by side on the same data:
 *   - unconverted: the target column is the same type (the baseline: the table keeps the
 *     ordinary copy, bytes passed through);
 *   - converted: `embedding=vector_to_float32le` into a target column of type bytea (the copy
 *     stages the rows as text on the target and inserts them through the conversion).
 * For each: the copy's seconds, MB/s and rows/s, the CPU seconds of the source server, of the
 * target server and of the daemon while it copied (where the conversion's work lands); then a
 * backlog of one-row updates of the embedding (--convert-updates transactions, written with no
 * consumer running) drained by each: changes/s and the same CPU split. Both results are checked
 * against the source, the bytea of a sample of rows byte by byte against what JavaScript makes
 * of the vector's text (Buffer.writeFloatLE of each Math.fround(Number(x))), so a wrong fast
 * result cannot pass.
 *
 * The test servers have no pgvector: the source's `vector` is a stand-in with pgvector's text
 * form, a domain over text named vector (the conversions take any type whose base name is
 * vector), and so is the unconverted target's. The source database (`convert`) and the two target
 * databases are the scenario's own; each run has its own slot and publication.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Cluster } from '../../test/harness/cluster.js';
import { parseConversions } from '../../src/convert/conversions.js';
import { valueOf } from '../../src/convert/value.js';
import { outcome, type BenchContext, type ConvertCopy, type ConvertResults, type ConvertStream, type Outcome } from '../context.js';
import { cpuSeconds, parentPid, serverCpuSeconds } from '../cpu.js';
import { writeMarker } from '../pgbench.js';
import { sleep } from '../proc.js';
import { fmt } from '../report.js';
import { connect, walbridgeEnv } from '../walbridge.js';
import { stopWalbridge, teardownWalbridge, walbridgeCopy, walbridgeDrain, type Backlog } from './steps.js';

const SOURCE_DB = 'convert';
const TABLE = 'public.mirt_memories';
const COLUMN = 'embedding';
const CONVERSION = 'vector_to_float32le';
export const CONVERT_SPEC = `${TABLE}.${COLUMN}=${CONVERSION}`;
/** OpenAI's text-embedding-3-small and ada-002. */
const DIMS = 1536;
/** Rows at scale 1: about 20 kB of vector text each, about 370 MB of COPY text in all. */
const ROWS_AT_SCALE_1 = 20_000;
/** One row in this many has no embedding (NULL stays NULL). */
const NULL_EVERY = 500;
/** Rows whose bytes are checked against JavaScript's, after the copy and again after the stream. */
const SAMPLE = 200;

/** pgvector's text form, checked as pgvector's input would roughly check it. */
const VECTOR_DOMAIN = String.raw`CREATE DOMAIN public.vector AS text CHECK (VALUE ~ '^\[[^]]*\]$')`;

/**
 * The table as on the source (and on the unconverted target): `embType` is the embedding's type.
 * The stand-in's column is STORAGE EXTERNAL (out of line, not compressed): a vector's float bytes
 * do not compress, and text that pglz compresses (at about 14 MB/s here) would put most of the
 * unconverted copy's time into compressing a stand-in on the target, which pgvector never does.
 */
const tableDdl = (embType: string) => `
CREATE TABLE public.mirt_memories (
  id uuid PRIMARY KEY,
  user_id bigint NOT NULL,
  kind text NOT NULL,
  content text NOT NULL,
  ${COLUMN} ${embType},
  created_at timestamptz NOT NULL
);
${embType === 'bytea' ? '' : `ALTER TABLE public.mirt_memories ALTER ${COLUMN} SET STORAGE EXTERNAL;`}
CREATE INDEX mirt_memories_user_idx ON public.mirt_memories (user_id, created_at);
CREATE TABLE public.bench_marker (id integer PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
`;

/**
 * One embedding's text as pgvector prints it: '[' + DIMS float4 values + ']', each float4's
 * shortest exact output (pgvector's too), values spread like OpenAI's (|x| < 0.05: -0.012345678,
 * 0.0301927). `seed` must refer to the row so that the subquery runs once per row.
 */
const vectorText = (seed: string) =>
  `'[' || array_to_string(ARRAY(SELECT ((random() - 0.5) * 0.1 + 0 * ${seed})::float4 FROM generate_series(1, ${DIMS})), ',') || ']'`;

/** The key of row k (1..rows). */
const keyOf = (k: string) => `md5('mem' || ${k})::uuid`;

/** The app's writes to embeddings: `n` transactions, each one row's vector replaced (every 1000th set to NULL). */
const UPDATE_PROCEDURE = `
CREATE PROCEDURE public.bench_update_embeddings(n integer, total integer) LANGUAGE plpgsql AS $$
BEGIN
  FOR i IN 1..n LOOP
    UPDATE public.mirt_memories
       SET ${COLUMN} = CASE WHEN i % 1000 = 0 THEN NULL ELSE ${vectorText('i')} END
     WHERE id = ${keyOf('(1 + (i::bigint * 7919) % total)')};
    COMMIT;
  END LOOP;
END $$`;

/** The two runs: the target database, its slot and publication (same name), and the extra environment. */
const RUNS = {
  unconverted: { db: 'convert_vector', env: {} as Record<string, string>, embType: 'public.vector' },
  converted: { db: 'convert_bytea', env: { WALBRIDGE_CONVERT: CONVERT_SPEC } as Record<string, string>, embType: 'bytea' },
} as const;
type Side = keyof typeof RUNS;
const SIDES: Side[] = ['unconverted', 'converted'];

export async function measureConvert(ctx: BenchContext): Promise<Outcome<{ convert: ConvertResults }>> {
  const { source, target, opts, say } = ctx;
  const t0 = Date.now();
  const rows = Math.max(200, Math.round(ROWS_AT_SCALE_1 * opts.scale));
  const res: ConvertResults = {
    table: TABLE,
    conversion: CONVERT_SPEC,
    dims: DIMS,
    rows,
    tableBytes: 0,
    textBytes: 0,
    updates: opts.convertUpdates,
    unconverted: {},
    converted: {},
  };
  const rec = outcome({ convert: res });
  rec.commands.convert_unconverted = `node dist/daemon.js  (SOURCE_DATABASE_URL=<source>/${SOURCE_DB}, TARGET_DATABASE_URL=<target>/${RUNS.unconverted.db}, WALBRIDGE_SCHEMAS=public; ${COLUMN} public.vector on both)`;
  rec.commands.convert_converted = `node dist/daemon.js  (the same into <target>/${RUNS.converted.db}, ${COLUMN} bytea there, WALBRIDGE_CONVERT="${CONVERT_SPEC}")`;
  rec.commands.convert_updates = `CALL public.bench_update_embeddings(${opts.convertUpdates}, ${rows})  (on the source, no consumer running: one transaction per updated row)`;
  const envs = Object.fromEntries(
    SIDES.map((s) => [
      s,
      walbridgeEnv(source.url(SOURCE_DB), target.url(RUNS[s].db), {
        ...opts.walbridgeSettings,
        WALBRIDGE_SCHEMAS: 'public',
        WALBRIDGE_SLOT: RUNS[s].db,
        WALBRIDGE_PUBLICATION: RUNS[s].db,
        ...RUNS[s].env,
      }),
    ]),
  ) as Record<Side, Record<string, string>>;
  const copied = new Set<Side>();
  try {
    say(`convert: building ${TABLE} on the source: ${fmt.n(rows)} rows, ${COLUMN} a ${DIMS}-dimension vector (stand-in domain over text) …`);
    const tb = Date.now();
    await buildSource(source, rows);
    for (const s of SIDES) await buildTarget(target, RUNS[s].db, RUNS[s].embType);
    const size = await source.query<{ table_bytes: string; text_bytes: string; nulls: string }>(
      `SELECT pg_table_size('${TABLE}')::text AS table_bytes, sum(octet_length(m::text))::text AS text_bytes,
              count(*) FILTER (WHERE ${COLUMN} IS NULL)::text AS nulls
         FROM ${TABLE} m`,
      [],
      SOURCE_DB,
    );
    res.tableBytes = Number(size[0]?.table_bytes ?? 0);
    res.textBytes = Number(size[0]?.text_bytes ?? 0);
    res.nullEmbeddings = Number(size[0]?.nulls ?? 0);
    res.buildSeconds = (Date.now() - tb) / 1000;
    say(`  built in ${fmt.s(res.buildSeconds)}: ${fmt.mb(res.tableBytes)} on disk (heap + TOAST), ${fmt.mb(res.textBytes)} as text, ${res.nullEmbeddings} NULL embeddings`);

    // 1. The copies, one after the other, each into its empty target database.
    for (const s of SIDES) {
      say(`convert: walbridge copy, ${s} (into ${RUNS[s].db}) …`);
      await target.query('CHECKPOINT', [], 'postgres');
      await source.query('CHECKPOINT', [], 'postgres');
      const run = res[s];
      try {
        run.copy = await timeCopy(ctx, s, envs[s], rec, res);
        copied.add(s);
        const c = run.copy;
        say(
          `  ${s}: ${fmt.s(c.seconds)} to streaming, the table in ${fmt.s(c.tableSeconds)} (${c.format ?? '?'} COPY): ${c.mbps?.toFixed(1)} MB/s, ${fmt.n(c.rowsPerSec)} rows/s; ` +
            `CPU s: source ${c.cpu?.source.toFixed(1)}, target ${c.cpu?.target.toFixed(1)}, daemon ${c.cpu?.daemon.toFixed(1)}; ${c.check}`,
        );
      } catch (err) {
        run.error = (err as Error).message;
        rec.errors.push(`convert ${s} copy: ${run.error}`);
        say(`  ${s} failed: ${run.error}`);
      }
    }

    // 2. The stream: a backlog of updates of the embedding, drained by each in turn.
    if (copied.size > 0) {
      say(`convert: writing ${fmt.n(opts.convertUpdates)} transactions, each updating one row's ${COLUMN}, no consumer running …`);
      const backlog = await writeUpdates(source, opts.convertUpdates, rows);
      res.updatesSeconds = backlog.pgbenchSeconds;
      res.updatesWalBytes = backlog.walBytes;
      say(`  written in ${fmt.s(backlog.pgbenchSeconds)}: ${fmt.mb(backlog.walBytes)} of WAL`);
      for (const s of SIDES) {
        if (!copied.has(s)) continue;
        say(`convert: walbridge stream, ${s} …`);
        const run = res[s];
        try {
          run.stream = await timeStream(ctx, s, envs[s], backlog, rows, rec);
          const d = run.stream;
          say(
            `  ${s}: ${fmt.n(d.changesPerSec)} changes/s (${fmt.s(d.streamSeconds)} streaming, ${fmt.s(d.seconds)} from the start); ` +
              `CPU s: source ${d.cpu?.source.toFixed(1)}, target ${d.cpu?.target.toFixed(1)}, daemon ${d.cpu?.daemon.toFixed(1)}; ${d.check}`,
          );
        } catch (err) {
          run.error = (err as Error).message;
          rec.errors.push(`convert ${s} stream: ${run.error}`);
          say(`  ${s} failed: ${run.error}`);
        }
      }
    }

    // 3. What real pgvector would add on the source: the converted copy reads the table as text, so
    // the source prints every element (vector_out); the stand-in is text already and prints nothing.
    say('convert: float4 text output on the source (what pgvector\'s vector_out would add to the converted copy) …');
    try {
      res.sourceTextOutput = await timeFloat4Output(source, (res.rows - (res.nullEmbeddings ?? 0)) * DIMS);
      const o = res.sourceTextOutput;
      say(`  ${o.nsPerElement.toFixed(0)} ns per element: about ${fmt.s(o.estimatedSeconds)} of source CPU for this table with pgvector`);
    } catch (err) {
      rec.errors.push(`convert float4 output: ${(err as Error).message}`);
      say(`  failed: ${(err as Error).message}`);
    }

    // 4. The conversion's expression alone, on the target, over the same text (where the converted copy's time goes).
    if (copied.has('unconverted')) {
      say('convert: the conversion expression alone on the target, over the vectors as text …');
      try {
        res.expression = await timeExpression(target, RUNS.unconverted.db, rows);
        const e = res.expression;
        say(`  ${fmt.s(e.convertSeconds, 2)} converting vs ${fmt.s(e.readSeconds, 2)} reading the text alone: ${e.nsPerElement.toFixed(0)} ns per element`);
      } catch (err) {
        rec.errors.push(`convert expression: ${(err as Error).message}`);
        say(`  failed: ${(err as Error).message}`);
      }
    }
  } finally {
    for (const s of SIDES) await teardownWalbridge(source, SOURCE_DB, RUNS[s].db, RUNS[s].db).catch(() => undefined);
    await source.query(`DROP DATABASE IF EXISTS ${SOURCE_DB} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    for (const s of SIDES) await target.query(`DROP DATABASE IF EXISTS ${RUNS[s].db} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    res.seconds = (Date.now() - t0) / 1000;
  }
  return rec;
}

/** The source database: the stand-in type, the table filled, the update procedure; vacuumed, frozen, and read once. */
async function buildSource(source: Cluster, rows: number): Promise<void> {
  await source.query(`DROP DATABASE IF EXISTS ${SOURCE_DB} WITH (FORCE)`, [], 'postgres');
  await source.query(`CREATE DATABASE ${SOURCE_DB}`, [], 'postgres');
  await source.withClient(async (c) => {
    await c.query(VECTOR_DOMAIN);
    await c.query(tableDdl('public.vector'));
    await c.query(UPDATE_PROCEDURE);
    await c.query('SELECT setseed(0.1536)');
    await c.query(
      `INSERT INTO ${TABLE} (id, user_id, kind, content, ${COLUMN}, created_at)
       SELECT ${keyOf('g')}, 1 + g % 5000, (ARRAY['fact', 'preference', 'episode', 'summary'])[1 + g % 4],
              'Memory ' || g || ': ' || repeat(md5(g::text) || ' ', 8 + g % 8),
              CASE WHEN g % ${NULL_EVERY} = 0 THEN NULL ELSE ${vectorText('g')} END,
              timestamptz '2025-01-01' + g * interval '17 minutes'
         FROM generate_series(1, ${rows}) g`,
    );
    await c.query(`VACUUM (FREEZE, ANALYZE) ${TABLE}`);
    // Every copy reads it from memory, the first one too.
    await c.query(`SELECT sum(octet_length(${COLUMN})) FROM ${TABLE}`);
  }, SOURCE_DB);
}

async function buildTarget(target: Cluster, db: string, embType: string): Promise<void> {
  await target.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`, [], 'postgres');
  await target.query(`CREATE DATABASE ${db}`, [], 'postgres');
  await target.withClient(async (c) => {
    if (embType === 'public.vector') await c.query(VECTOR_DOMAIN);
    await c.query(tableDdl(embType));
  }, db);
}

/** The postmaster's pid: the parent of a backend, read while that backend is there. */
async function postmasterOf(cluster: Cluster): Promise<number> {
  return cluster.withClient(async (c) => {
    const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const pid = parentPid(r.rows[0]?.pid ?? -1);
    if (pid === null) throw new Error(`cannot find the postmaster of ${cluster.name}`);
    return pid;
  }, 'postgres');
}

/**
 * CPU seconds of both servers from here on; `stop(daemonPid)` adds the daemon's whole life. Not
 * the whole machine's (/proc/stat): on a shared machine that counts whatever else runs.
 */
async function cpuWindow(ctx: BenchContext): Promise<{ stop(daemonPid: number | undefined): NonNullable<ConvertCopy['cpu']> }> {
  const [sp, tp] = await Promise.all([postmasterOf(ctx.source), postmasterOf(ctx.target)]);
  const s0 = serverCpuSeconds(sp);
  const t0 = serverCpuSeconds(tp);
  return {
    stop: (daemonPid) => ({
      source: serverCpuSeconds(sp) - s0,
      target: serverCpuSeconds(tp) - t0,
      daemon: (daemonPid === undefined ? null : cpuSeconds(daemonPid)) ?? 0,
    }),
  };
}

/**
 * What walbridge's sessions on the target are busy with, sampled every 100 ms from
 * pg_stat_activity (active sessions, by what their statement does): session-seconds per kind.
 */
class TargetWork {
  private readonly seconds = new Map<string, number>();
  private running = true;
  private readonly done: Promise<void>;
  private static readonly EVERY_MS = 100;

  constructor(private readonly client: pg.Client) {
    this.done = (async () => {
      while (this.running) {
        const t = Date.now();
        try {
          const r = await this.client.query<{ query: string }>(
            `SELECT left(query, 200) AS query FROM pg_stat_activity
              WHERE state = 'active' AND pid <> pg_backend_pid() AND application_name LIKE 'walbridge%' AND application_name NOT LIKE 'walbridge-bench%'`,
          );
          for (const row of r.rows) {
            const k = TargetWork.kind(row.query);
            this.seconds.set(k, (this.seconds.get(k) ?? 0) + TargetWork.EVERY_MS / 1000);
          }
        } catch {
          // a missed sample
        }
        await sleep(Math.max(0, TargetWork.EVERY_MS - (Date.now() - t)));
      }
    })();
  }

  private static kind(q: string): string {
    if (/^COPY \S*walbridge_stage/.test(q)) return 'COPY into the staging table (text)';
    // The staged rows' columns are s.c0, s.c1 … (the stream's are u.c0 …); the statement's text may be cut before its FROM.
    if (/^INSERT INTO .* SELECT .*\bs\.c0\b/s.test(q)) return 'INSERT … SELECT through the conversion';
    if (/^COPY /.test(q)) return 'COPY into the table';
    if (/^(CREATE (UNIQUE )?INDEX|ALTER TABLE)/i.test(q)) return 'indexes built again';
    if (/^(INSERT|UPDATE|DELETE|WITH|MERGE)/i.test(q)) return 'applying changes';
    if (/^SELECT count\(\(CASE WHEN u\.v IS NULL/.test(q)) return 'preflight: the conversion tried on sample values';
    if (/^COMMIT/i.test(q)) return 'COMMIT';
    return 'other (catalog reads, state)';
  }

  async stop(): Promise<Array<[string, number]>> {
    this.running = false;
    await this.done;
    return [...this.seconds.entries()].sort((a, b) => b[1] - a[1]);
  }
}

/** One walbridge copy until it streams, with the CPU of each server meanwhile; then stopped and checked. */
async function timeCopy(ctx: BenchContext, side: Side, env: Record<string, string>, rec: Outcome<{ convert: ConvertResults }>, res: ConvertResults): Promise<ConvertCopy> {
  const db = RUNS[side].db;
  const label = `convert-${side}`;
  const watcher = await connect(ctx.target, db);
  const work = new TargetWork(watcher);
  const cpu = await cpuWindow(ctx);
  try {
    const c = await walbridgeCopy(ctx, env, db, label);
    const cpuSeconds = cpu.stop(c.w.daemon.child.pid);
    const activity = await work.stop();
    const log = c.w.daemon.logs().find((l) => l.msg === 'copy finished' && String(l.table).includes('mirt_memories'));
    const t = c.tables.find((x) => x.table.includes('mirt_memories'));
    await stopWalbridge(ctx, c.w, label, rec.profiles);
    const peak = c.w.rss.peakMb();
    rec.rssMb[label] = peak;
    const tableSeconds = t?.seconds ?? c.backfillSeconds ?? c.seconds;
    return {
      seconds: c.seconds,
      tableSeconds,
      ...(typeof log?.format === 'string' ? { format: log.format } : {}),
      copiedBytes: t?.bytes ?? c.copiedBytes,
      mbps: res.tableBytes / 1048576 / tableSeconds,
      rowsPerSec: res.rows / tableSeconds,
      cpu: cpuSeconds,
      targetWork: activity,
      peakRssMb: peak,
      check: await checkTarget(ctx, side, await sampleKeys(ctx.source, SAMPLE)),
    };
  } finally {
    await work.stop();
    await watcher.end().catch(() => undefined);
  }
}

/** The backlog: `n` update transactions, then a marker; figures as a Backlog for walbridgeDrain. */
async function writeUpdates(source: Cluster, n: number, rows: number): Promise<Backlog> {
  const lsn = async () => (await source.query<{ l: string }>('SELECT pg_current_wal_lsn()::text AS l', [], SOURCE_DB))[0]?.l ?? '0/0';
  const l0 = await lsn();
  const t0 = Date.now();
  await source.query(`CALL public.bench_update_embeddings(${n}, ${rows})`, [], SOURCE_DB);
  const seconds = (Date.now() - t0) / 1000;
  const marker = await writeMarker(source, SOURCE_DB);
  const [w] = await source.query<{ b: string }>('SELECT ($1::pg_lsn - $2::pg_lsn)::text AS b', [marker.lsn, l0], SOURCE_DB);
  return {
    transactions: n,
    failed: 0,
    changes: n,
    walBytes: Number(w?.b ?? 0),
    pgbenchSeconds: seconds,
    pgbenchTps: n / seconds,
    marker: { id: marker.id, lsn: marker.lsn },
    command: `CALL public.bench_update_embeddings(${n}, ${rows})`,
  };
}

/** One walbridge drains the updates (it copied before, its slot holds them): changes/s and the CPU split; then checked. */
async function timeStream(ctx: BenchContext, side: Side, env: Record<string, string>, backlog: Backlog, rows: number, rec: Outcome<{ convert: ConvertResults }>): Promise<ConvertStream> {
  const db = RUNS[side].db;
  const label = `convert-${side}-stream`;
  const cpu = await cpuWindow(ctx);
  const d = await walbridgeDrain(ctx, env, db, backlog, label);
  const cpuSeconds = cpu.stop(d.w.daemon.child.pid);
  await stopWalbridge(ctx, d.w, label, rec.profiles);
  rec.rssMb[label] = d.w.rss.peakMb();
  const seconds = d.streamSeconds ?? d.seconds;
  // The rows the updates wrote last, and a sample of the rest.
  const updated = Array.from({ length: Math.min(SAMPLE, backlog.changes) }, (_, j) => idOf(1 + (((backlog.changes - j) * 7919) % rows)));
  const keys = [...new Set([...updated, ...(await sampleKeys(ctx.source, SAMPLE / 2))])];
  return {
    seconds: d.seconds,
    streamSeconds: seconds,
    changesPerSec: backlog.changes / seconds,
    cpu: cpuSeconds,
    walbridgeCpu: d.cpu,
    peakRssMb: d.w.rss.peakMb(),
    check: await checkTarget(ctx, side, keys),
  };
}

/** The key of row k, as keyOf() computes it in SQL. */
function idOf(k: number): string {
  const h = createHash('md5').update(`mem${k}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** `n` keys spread over the table (their order fixed by a hash, not by the data). */
async function sampleKeys(source: Cluster, n: number): Promise<string[]> {
  const r = await source.query<{ id: string }>(`SELECT id::text AS id FROM ${TABLE} ORDER BY md5(id::text || 'sample') LIMIT ${n}`, [], SOURCE_DB);
  return r.map((x) => x.id);
}

/** float32 little-endian, as numpy's .astype(np.float32).tobytes() would write it, computed here and not by any server. */
export function float32le(vectorText: string): Buffer {
  if (!vectorText.startsWith('[') || !vectorText.endsWith(']')) throw new Error(`not a vector: ${vectorText.slice(0, 40)}`);
  const inner = vectorText.slice(1, -1);
  const xs = inner === '' ? [] : inner.split(',');
  const b = Buffer.alloc(4 * xs.length);
  xs.forEach((x, i) => {
    const v = Number(x);
    if (!Number.isFinite(v)) throw new Error(`element ${i + 1} of a vector is not a number: ${x}`);
    b.writeFloatLE(Math.fround(v), 4 * i);
  });
  return b;
}

/**
 * The target against the source: row counts, NULLs, the length of every converted value (all
 * rows), and the given rows value by value (the converted ones against float32le() of the
 * source's text; the unconverted ones text against text). Throws on any difference.
 */
async function checkTarget(ctx: BenchContext, side: Side, keys: string[]): Promise<string> {
  const db = RUNS[side].db;
  const counts = `SELECT count(*)::int AS n, count(*) FILTER (WHERE ${COLUMN} IS NULL)::int AS nulls FROM ${TABLE}`;
  const [s] = await ctx.source.query<{ n: number; nulls: number }>(counts, [], SOURCE_DB);
  const [t] = await ctx.target.query<{ n: number; nulls: number; bad_len?: number }>(
    side === 'converted' ? `SELECT count(*)::int AS n, count(*) FILTER (WHERE ${COLUMN} IS NULL)::int AS nulls, count(*) FILTER (WHERE length(${COLUMN}) <> ${4 * DIMS})::int AS bad_len FROM ${TABLE}` : counts,
    [],
    db,
  );
  const problems: string[] = [];
  if (s?.n !== t?.n) problems.push(`rows: source ${s?.n}, target ${t?.n}`);
  if (s?.nulls !== t?.nulls) problems.push(`NULL embeddings: source ${s?.nulls}, target ${t?.nulls}`);
  if (t?.bad_len) problems.push(`${t.bad_len} converted value(s) not ${4 * DIMS} bytes long`);
  const list = keys.map((k) => `'${k}'::uuid`).join(', ');
  const src = await ctx.source.query<{ id: string; v: string | null; rest: string }>(
    `SELECT id::text AS id, ${COLUMN}::text AS v, row(user_id, kind, content, created_at)::text AS rest FROM ${TABLE} WHERE id IN (${list})`,
    [],
    SOURCE_DB,
  );
  const tgt = await ctx.target.query<{ id: string; v: string | Buffer | null; rest: string }>(
    `SELECT id::text AS id, ${COLUMN} AS v, row(user_id, kind, content, created_at)::text AS rest FROM ${TABLE} WHERE id IN (${list})`,
    [],
    db,
  );
  const byId = new Map(tgt.map((r) => [r.id, r]));
  let compared = 0;
  for (const r of src) {
    const x = byId.get(r.id);
    if (!x) {
      problems.push(`row ${r.id} missing on the target`);
      continue;
    }
    compared++;
    if (x.rest !== r.rest) problems.push(`row ${r.id}: other columns differ`);
    if (r.v === null || x.v === null) {
      if (r.v !== x.v) problems.push(`row ${r.id}: ${COLUMN} NULL on one side only`);
    } else if (side === 'converted') {
      const want = float32le(r.v);
      if (!(x.v instanceof Buffer) || !x.v.equals(want)) {
        const got = x.v instanceof Buffer ? x.v : Buffer.from(String(x.v));
        let at = 0;
        while (at < want.length && got[at] === want[at]) at++;
        problems.push(`row ${r.id}: ${COLUMN} bytes differ from float32le(source text) at byte ${at} (${got.length} vs ${want.length} bytes)`);
      }
    } else if (x.v !== r.v) problems.push(`row ${r.id}: ${COLUMN} text differs`);
  }
  if (src.length < keys.length) problems.push(`only ${src.length} of the ${keys.length} sampled keys found on the source`);
  if (problems.length > 0) throw new Error(`${side} target is WRONG: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? ` (+${problems.length - 5} more)` : ''}`);
  return side === 'converted'
    ? `${fmt.n(t?.n)} rows, ${fmt.n(t?.nulls)} NULL, every value ${4 * DIMS} bytes; ${compared} rows' bytes equal to Buffer.writeFloatLE(Math.fround(x)) of the source's text`
    : `${fmt.n(t?.n)} rows, ${fmt.n(t?.nulls)} NULL; ${compared} rows equal to the source's, text for text`;
}

/**
 * float4's text output per element on the source, over a sample of the vectors as real[]: what
 * pgvector's vector_out spends (the same shortest round-trip printing of each float) when a
 * converted table is read with COPY's text format. Times `sum(length(a::text))` against
 * `sum(array_length(a, 1))`, best of three each; `elements`: the table's, for the estimate.
 */
async function timeFloat4Output(source: Cluster, elements: number): Promise<NonNullable<ConvertResults['sourceTextOutput']>> {
  return source.withClient(async (c) => {
    await c.query(
      `CREATE TEMPORARY TABLE wb_bench_f4 AS SELECT string_to_array(btrim(${COLUMN}, '[]'), ',')::float4[] AS a FROM ${TABLE} WHERE ${COLUMN} IS NOT NULL LIMIT 2000`,
    );
    const [n] = (await c.query<{ n: string }>('SELECT sum(array_length(a, 1))::text AS n FROM wb_bench_f4')).rows;
    const best = async (sql: string) => {
      let min = Infinity;
      for (let i = 0; i < 3; i++) {
        const t0 = process.hrtime.bigint();
        await c.query(sql);
        min = Math.min(min, Number(process.hrtime.bigint() - t0) / 1e9);
      }
      return min;
    };
    const read = await best('SELECT sum(array_length(a, 1)) FROM wb_bench_f4');
    const print = await best('SELECT sum(length(a::text)) FROM wb_bench_f4');
    const nsPerElement = ((print - read) * 1e9) / Math.max(1, Number(n?.n ?? 0));
    return { nsPerElement, sampleElements: Number(n?.n ?? 0), estimatedSeconds: (nsPerElement * elements) / 1e9 };
  }, SOURCE_DB);
}

/**
 * The conversion's expression alone on the target, over the vectors' text (the unconverted
 * target holds them): the time of `sum(length(<conversion>))` against `sum(length(text))`, the
 * difference per vector element. The same expression the copy's INSERT … SELECT and the stream use.
 */
async function timeExpression(target: Cluster, db: string, rows: number): Promise<NonNullable<ConvertResults['expression']>> {
  const conversion = parseConversions(CONVERT_SPEC).get(`${TABLE}.${COLUMN}`);
  if (!conversion) throw new Error(`no conversion in ${CONVERT_SPEC}`);
  const expr = valueOf({ type: 'bytea', convert: conversion.toTarget }, `m.${COLUMN}::text`);
  return target.withClient(async (c) => {
    const time = async (sql: string) => {
      const t0 = process.hrtime.bigint();
      await c.query(sql);
      return Number(process.hrtime.bigint() - t0) / 1e9;
    };
    // Once to have it in memory, then timed.
    await time(`SELECT sum(length(m.${COLUMN}::text)) FROM ${TABLE} m`);
    const readSeconds = await time(`SELECT sum(length(m.${COLUMN}::text)) FROM ${TABLE} m`);
    const convertSeconds = await time(`SELECT sum(length(${expr})) FROM ${TABLE} m`);
    const [n] = (await c.query<{ n: string }>(`SELECT count(${COLUMN})::text AS n FROM ${TABLE}`)).rows;
    const elements = Number(n?.n ?? rows) * DIMS;
    return { readSeconds, convertSeconds, elements, nsPerElement: ((convertSeconds - readSeconds) * 1e9) / Math.max(1, elements) };
  }, db);
}
