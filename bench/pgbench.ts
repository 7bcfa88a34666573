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
const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The workloads: the app's mix of writes (bench/app.pgbench), and session documents of several kB rewritten each turn (bench/sessions.pgbench). */
export const SCRIPTS = { app: path.join(HERE, 'app.pgbench'), sessions: path.join(HERE, 'sessions.pgbench') } as const;
export type Workload = keyof typeof SCRIPTS;

export interface PgbenchRun {
  /** Either a number of transactions in total (split over the clients) or a duration. */
  transactions?: number;
  seconds?: number;
  clients: number;
  jobs?: number;
  /** Throttle to this many transactions per second in total (pgbench -R); default full rate. */
  rate?: number;
  /** Leave out the app's writes to its one table without a key (webhook_dedupe): only keyed tables are written. */
  keyedOnly?: boolean;
  /** Which script (default the app's). */
  workload?: Workload;
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
    SCRIPTS[run.workload ?? 'app'],
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
    '-D',
    `kinds=${run.keyedOnly ? 80 : 100}`,
    url,
  ];
}

const commandOf = (args: string[]) => `pgbench ${args.slice(0, -1).join(' ').replace(HERE, 'bench')} <source-url>`;

/** What pgbench printed at its end: transactions, failures, tps; null if it printed no summary. */
function summaryOf(out: string): { transactions: number; failed: number; tps: number | null } | null {
  const processed = /number of transactions actually processed: (\d+)/.exec(out);
  if (!processed) return null;
  const failed = /number of failed transactions: (\d+)/.exec(out);
  const tps = /tps = ([\d.]+)/.exec(out);
  return { transactions: Number(processed[1]), failed: failed ? Number(failed[1]) : 0, tps: tps ? Number(tps[1]) : null };
}

/** Run pgbench to its end; throws on failure with its output. */
export async function runPgbench(source: Cluster, ranges: BulkRanges, run: PgbenchRun, database = 'app'): Promise<PgbenchResult> {
  const args = pgbenchArgs(source.url(database), ranges, run);
  const t0 = Date.now();
  const r = await collect(spawnTracked(PGBENCH, args), t0).then((x) => x);
  const out = r.stdout + r.stderr;
  const sum = summaryOf(out);
  if (r.code !== 0 || !sum) throw new Error(`pgbench failed (exit ${r.code}):\n${lastLines(out, 12)}`);
  return { transactions: sum.transactions, failed: sum.failed, tps: sum.tps ?? sum.transactions / r.seconds, seconds: r.seconds, command: commandOf(args) };
}

/** pgbench running in the background, until something stops its writes (a fence) or stop(). */
export interface PgbenchLoad {
  command: string;
  startedAt: number;
  /** Still running? */
  running(): boolean;
  /** Its exit (by itself: every client stopped on an error) or after stop(). */
  done: Promise<BackgroundPgbench>;
  /** SIGINT, then its exit. */
  stop(): Promise<BackgroundPgbench>;
}

export interface BackgroundPgbench {
  code: number | null;
  seconds: number;
  /** From its summary, when it printed one (it does when its clients stop on errors, not when interrupted). */
  transactions: number | null;
  tps: number | null;
  /** Clients that stopped on an error, and the first such error. */
  abortedClients: number;
  firstError: string | null;
  output: string;
}

/**
 * Start pgbench for at most `run.seconds` and return at once. A client whose statement fails stops
 * (pgbench aborts a client on an error other than a serialization failure or deadlock), and pgbench
 * exits once every client has: that is how a fence ends it.
 */
export function startPgbench(source: Cluster, ranges: BulkRanges, run: PgbenchRun, database = 'app'): PgbenchLoad {
  const args = pgbenchArgs(source.url(database), ranges, run);
  const t0 = Date.now();
  const child = spawnTracked(PGBENCH, args);
  const done = collect(child, t0).then((r): BackgroundPgbench => {
    const output = r.stdout + r.stderr;
    const sum = summaryOf(output);
    const aborted = output.split('\n').filter((l) => /client \d+ (script \d+ )?aborted/.test(l));
    const err = /ERROR: {1,2}(.*)/.exec(output);
    return {
      code: r.code,
      seconds: r.seconds,
      transactions: sum?.transactions ?? null,
      tps: sum?.tps ?? null,
      abortedClients: aborted.length,
      firstError: err?.[1] ?? null,
      output,
    };
  });
  let exited = false;
  void done.then(() => (exited = true));
  return {
    command: commandOf(args),
    startedAt: t0,
    running: () => !exited,
    done,
    stop() {
      if (!exited) child.kill('SIGINT');
      return done;
    },
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
