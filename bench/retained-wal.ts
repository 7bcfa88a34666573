/**
 * Retained WAL during the copy (design.md, "never sit on the slot"): while walbridge copies a big
 * table, a steady write load writes far more WAL than the slot may hold back; the slot's retained
 * WAL (pg_current_wal_lsn() - restart_lsn) is sampled every 500 ms. If walbridge drains the stream
 * into durable storage during the copy, its maximum stays far below what the load wrote.
 *
 * Reusable by a test: prepareRetainedWal() builds the two databases on given clusters, and
 * measureRetainedWalDuringCopy() runs the daemon and returns the numbers (it tears down its slot
 * and publication afterwards).
 */
import pg from 'pg';
import type { Cluster } from '../test/harness/cluster.js';
import { connect, copyTimings, daemonTail, dropSlotWhenFree, launchWalbridge, logTime, recordedPhase, walbridgeEnv, type TableCopy, type Walbridge } from './walbridge.js';

const BACKFILL_DONE = 'backfill finished; applying the changes spooled meanwhile';
import { parseLsn } from './lag.js';
import { sleep } from './proc.js';

const DDL = `
CREATE TABLE public.wal_copy_big (id bigint PRIMARY KEY, kind integer NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE public.wal_load (id bigserial PRIMARY KEY, body text NOT NULL, at timestamptz NOT NULL DEFAULT now());
`;

/**
 * Create database `database` on both clusters with the two tables; fill wal_copy_big on the
 * source with about `tableMB` MB (rows of ~1 kB, poorly compressible). Returns its size in bytes.
 */
export async function prepareRetainedWal(source: Cluster, target: Cluster, database: string, tableMB: number): Promise<number> {
  for (const c of [source, target]) {
    await c.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`, [], 'postgres');
    await c.query(`CREATE DATABASE ${database}`, [], 'postgres');
    await c.query(DDL, [], database);
  }
  const rows = Math.max(1000, Math.round((tableMB * 1024 * 1024) / 1150));
  await source.query(
    `INSERT INTO public.wal_copy_big
     SELECT g, g % 17, md5(g::text) || repeat(md5((g * 31)::text), 30), timestamptz '2024-01-01' + g * interval '1 second'
       FROM generate_series(1, ${rows}) g`,
    [],
    database,
  );
  await source.query('ANALYZE public.wal_copy_big', [], database);
  const [r] = await source.query<{ b: string }>(`SELECT pg_total_relation_size('public.wal_copy_big')::text AS b`, [], database);
  return Number(r?.b ?? 0);
}

export interface RetainedWalOptions {
  source: Cluster;
  target: Cluster;
  /** Database prepared by prepareRetainedWal (same name on both clusters). */
  database: string;
  /** WAL the load writes per second (MB/s), paced; default 10. */
  loadMBps?: number;
  sampleMs?: number;
  /** Give up when the copy has not finished after this long; default 15 min. */
  timeoutMs?: number;
  /** After the copy, wait at most this long for the spool to be applied (phase streaming); default 5 min. */
  catchUpTimeoutMs?: number;
  /** Extra daemon environment (slot/publication names default to walbridge_retained). */
  env?: Record<string, string>;
  nodeArgs?: string[];
}

export interface RetainedWalResult {
  /** Seconds from the daemon's start until its backfill finished (all tables copied). */
  copySeconds: number;
  /** WAL written on the source from the daemon's start until the copy finished. */
  loadWalBytes: number;
  /** Highest sampled pg_current_wal_lsn() - restart_lsn of walbridge's slot while copying. */
  maxRetainedBytes: number;
  /** Seconds from the end of the copy until walbridge was streaming (spool applied); null if not within catchUpTimeoutMs. */
  catchUpSeconds: number | null;
  /** Same, over the whole run until walbridge was streaming (spool applied). */
  maxRetainedUntilStreamingBytes: number;
  /** Retained WAL at the end of the copy. */
  retainedAtCopyEndBytes: number;
  samples: Array<{ t: number; retainedBytes: number; phase: string | null }>;
  peakRssMb: number;
  copiedBytes: number;
  /** walbridge's own per-table copy timings. */
  tables: TableCopy[];
}

/** A paced writer: inserts ~64 kB transactions into wal_load so the source writes `mbps` MB/s of WAL. */
function startWalLoad(url: string, mbps: number): { stop(): Promise<number> } {
  let running = true;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url, application_name: 'walbridge-bench-wal-load' });
    c.on('error', () => undefined);
    await c.connect();
    try {
      const first = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
      const start = parseLsn(first.rows[0]?.lsn ?? '0/0');
      const t0 = Date.now();
      let txns = 0;
      while (running) {
        const res = (await c.query(
          `INSERT INTO public.wal_load (body) SELECT md5(random()::text) || repeat(md5(random()::text), 31) FROM generate_series(1, 60);
           SELECT pg_current_wal_lsn()::text AS lsn`,
        )) as unknown as pg.QueryResult<{ lsn: string }>[];
        txns++;
        const lsn = parseLsn(res[1]?.rows[0]?.lsn ?? '0/0');
        const written = Number(lsn - start);
        const dueMs = (written / (mbps * 1024 * 1024)) * 1000;
        const ahead = dueMs - (Date.now() - t0);
        if (ahead > 0) await sleep(ahead);
      }
      return txns;
    } finally {
      await c.end().catch(() => undefined);
    }
  })();
  return {
    async stop() {
      running = false;
      return done;
    },
  };
}

export async function measureRetainedWalDuringCopy(opts: RetainedWalOptions): Promise<RetainedWalResult> {
  const { source, target, database } = opts;
  const slot = opts.env?.WALBRIDGE_SLOT ?? 'walbridge_retained';
  const publication = opts.env?.WALBRIDGE_PUBLICATION ?? 'walbridge_retained';
  const env = walbridgeEnv(source.url(database), target.url(database), {
    WALBRIDGE_SCHEMAS: 'public',
    WALBRIDGE_SLOT: slot,
    WALBRIDGE_PUBLICATION: publication,
    ...opts.env,
  });
  const load = startWalLoad(source.url(database), opts.loadMBps ?? 10);
  const src = await connect(source, database);
  const tgt = await connect(target, database);
  let w: Walbridge | undefined;
  try {
    await sleep(1000); // the load is at its pace before the copy starts
    const startLsn = parseLsn((await src.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]?.lsn ?? '0/0');
    w = await launchWalbridge(env, opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {});
    const samples: RetainedWalResult['samples'] = [];
    let copyEndLsn: bigint | null = null;
    let copyEndAt: number | null = null;
    let retainedAtCopyEnd = 0;
    let streamingAt: number | null = null;
    const deadline = Date.now() + (opts.timeoutMs ?? 15 * 60_000);
    let catchUpDeadline = Number.POSITIVE_INFINITY;
    for (;;) {
      const r = await src.query<{ retained: string | null; lsn: string }>(
        `SELECT (pg_current_wal_lsn() - restart_lsn)::text AS retained, pg_current_wal_lsn()::text AS lsn
           FROM pg_replication_slots WHERE slot_name = $1`,
        [slot],
      );
      const p = await recordedPhase(tgt);
      const row = r.rows[0];
      const phase = p?.phase ?? null;
      if (row?.retained != null) samples.push({ t: Date.now() - w.startedAt, retainedBytes: Number(row.retained), phase });
      const copied = w.daemon.logs().some((l) => l.msg === BACKFILL_DONE);
      if (copyEndLsn === null && (copied || phase === 'streaming') && row) {
        // The copy is over: the load stops, and the spool is applied.
        copyEndLsn = parseLsn(row.lsn);
        copyEndAt = Date.now();
        retainedAtCopyEnd = Number(row.retained ?? 0);
        await load.stop();
        catchUpDeadline = Date.now() + (opts.catchUpTimeoutMs ?? 5 * 60_000);
      }
      if (phase === 'streaming') {
        streamingAt = Date.now();
        break;
      }
      if (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null) throw new Error(`walbridge exited during the copy:\n${daemonTail(w)}`);
      if (Date.now() > catchUpDeadline) break; // copied, but the spool is still being applied: reported as such
      if (Date.now() > deadline) throw new Error(`copy not finished after ${(opts.timeoutMs ?? 900_000) / 1000} s:\n${daemonTail(w)}`);
      await sleep(opts.sampleMs ?? 500);
    }
    await load.stop();
    const copyEndMs = logTime(w, BACKFILL_DONE) ?? (copyEndAt ?? Date.now()) - w.startedAt;
    const during = samples.filter((s) => s.t <= copyEndMs);
    const max = (xs: typeof samples) => xs.reduce((m, s) => Math.max(m, s.retainedBytes), 0);
    const tables = copyTimings(w);
    await w.stop();
    return {
      copySeconds: copyEndMs / 1000,
      catchUpSeconds: streamingAt === null || copyEndAt === null ? null : (streamingAt - copyEndAt) / 1000,
      loadWalBytes: Number((copyEndLsn ?? startLsn) - startLsn),
      maxRetainedBytes: max(during),
      maxRetainedUntilStreamingBytes: max(samples),
      retainedAtCopyEndBytes: retainedAtCopyEnd,
      samples,
      peakRssMb: w.rss.peakMb(),
      copiedBytes: tables.reduce((a, t) => a + t.bytes, 0),
      tables,
    };
  } finally {
    await load.stop().catch(() => undefined);
    await w?.stop().catch(() => undefined);
    await dropSlotWhenFree(src, slot).catch(() => undefined);
    await src.query(`DROP PUBLICATION IF EXISTS ${pg.escapeIdentifier(publication)}`).catch(() => undefined);
    await Promise.all([src.end().catch(() => undefined), tgt.end().catch(() => undefined)]);
  }
}
