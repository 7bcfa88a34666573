/**
 * The app's write load, driven by Debian's pgbench with bench/app.pgbench, and the counters
 * needed to turn it into rates: row changes (pg_stat_user_tables) and WAL written.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Cluster } from '../test/harness/cluster.js';
import type { BulkRanges } from './dataset.js';
import { collect, lastLines, sleep, spawnTracked } from './proc.js';

const PGBENCH = '/usr/bin/pgbench';
export const APP_SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 'app.pgbench');

export interface PgbenchRun {
  /** Either a number of transactions in total (split over the clients) or a duration. */
  transactions?: number;
  seconds?: number;
  clients: number;
  jobs?: number;
  /** Throttle to this many transactions per second in total (pgbench -R); default full rate. */
  rate?: number;
}

export interface PgbenchResult {
  transactions: number;
  failed: number;
  tps: number;
  seconds: number;
  command: string;
}

export function pgbenchArgs(url: string, ranges: BulkRanges, run: PgbenchRun): string[] {
  const clients = Math.max(1, run.clients);
  const limit = run.transactions !== undefined ? ['-t', String(Math.ceil(run.transactions / clients))] : ['-T', String(run.seconds ?? 30)];
  return [
    '-n',
    '-f',
    APP_SCRIPT,
    '-c',
    String(clients),
    '-j',
    String(Math.min(clients, run.jobs ?? 2)),
    ...limit,
    ...(run.rate ? ['-R', String(run.rate)] : []),
    '-D',
    `user_lo=${ranges.userLo}`,
    '-D',
    `users=${ranges.users}`,
    '-D',
    `sessions=${ranges.sessions}`,
    '-D',
    `product_lo=${ranges.productLo}`,
    '-D',
    `products=${ranges.products}`,
    url,
  ];
}

/** Run pgbench to its end; throws on failure with its output. */
export async function runPgbench(source: Cluster, ranges: BulkRanges, run: PgbenchRun, database = 'app'): Promise<PgbenchResult> {
  const args = pgbenchArgs(source.url(database), ranges, run);
  const t0 = Date.now();
  const r = await collect(spawnTracked(PGBENCH, args), t0).then((x) => x);
  const out = r.stdout + r.stderr;
  const processed = /number of transactions actually processed: (\d+)/.exec(out);
  const failed = /number of failed transactions: (\d+)/.exec(out);
  const tps = /tps = ([\d.]+)/.exec(out);
  if (r.code !== 0 || !processed) throw new Error(`pgbench failed (exit ${r.code}):\n${lastLines(out, 12)}`);
  return {
    transactions: Number(processed[1]),
    failed: failed ? Number(failed[1]) : 0,
    tps: tps ? Number(tps[1]) : Number(processed[1]) / r.seconds,
    seconds: r.seconds,
    command: `pgbench ${args.slice(0, -1).join(' ').replace(APP_SCRIPT, 'bench/app.pgbench')} <source-url>`,
  };
}

/** Rows inserted + updated + deleted so far in the migrated schemas (cumulative statistics). */
export async function rowChanges(source: Cluster, database = 'app'): Promise<number> {
  const [r] = await source.query<{ n: string }>(
    `SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::text AS n FROM pg_stat_user_tables WHERE schemaname IN ('public', 'auth')`,
    [],
    database,
  );
  return Number(r?.n ?? 0);
}

/**
 * Row changes once the statistics have settled: backends flush their counters at exit, so after
 * pgbench exits the number stops moving within a moment.
 */
export async function settledRowChanges(source: Cluster, database = 'app'): Promise<number> {
  let last = await rowChanges(source, database);
  for (let i = 0; i < 20; i++) {
    await sleep(250);
    const now = await rowChanges(source, database);
    if (now === last) return now;
    last = now;
  }
  return last;
}

export async function currentLsn(source: Cluster, database = 'app'): Promise<string> {
  const [r] = await source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn', [], database);
  return r?.lsn ?? '0/0';
}

export async function lsnDiff(source: Cluster, a: string, b: string): Promise<number> {
  const [r] = await source.query<{ d: string }>('SELECT ($1::pg_lsn - $2::pg_lsn)::text AS d', [a, b], 'postgres');
  return Number(r?.d ?? 0);
}

let markerSeq = 0;

/**
 * A marker transaction after everything else: once its row is on a target, every source
 * transaction committed before it has been applied there (both consumers apply in commit order).
 * Returns its id and the source WAL position right after its commit.
 */
export async function writeMarker(source: Cluster, database = 'app'): Promise<{ id: number; lsn: string; at: number }> {
  markerSeq++;
  const id = markerSeq;
  return source.withClient(async (c) => {
    await c.query('INSERT INTO public.bench_marker (id) VALUES ($1)', [id]);
    const at = Date.now();
    const r = await c.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return { id, lsn: r.rows[0]?.lsn ?? '0/0', at };
  }, database);
}

/** Poll a target database every 50 ms for the marker row; returns the time it was seen. */
export async function waitForMarker(
  target: Cluster,
  database: string,
  id: number,
  timeoutMs: number,
  alive: () => void = () => undefined,
): Promise<number> {
  const t0 = Date.now();
  return target.withClient(async (c) => {
    for (;;) {
      const r = await c.query('SELECT 1 FROM public.bench_marker WHERE id = $1', [id]);
      if ((r.rowCount ?? 0) > 0) return Date.now();
      alive();
      if (Date.now() - t0 > timeoutMs) throw new Error(`marker ${id} not applied on ${database} after ${timeoutMs / 1000} s`);
      await sleep(50);
    }
  }, database);
}
