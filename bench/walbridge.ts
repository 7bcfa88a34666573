/**
 * walbridge under the benchmark: the built daemon (`node dist/daemon.js`, as Railway runs it)
 * with its RSS sampled every 200 ms, and the few things read from what it records on the target.
 */
import pg from 'pg';
import type { Cluster } from '../test/harness/cluster.js';
import { CLI, startDaemon, type DaemonProcess } from '../test/helpers/daemon.js';
import { collect, sleep, spawnTracked } from './proc.js';
import { RssSampler } from './rss.js';

export interface Walbridge {
  daemon: DaemonProcess;
  rss: RssSampler;
  startedAt: number;
  /** SIGTERM, wait for the exit, stop sampling. */
  stop(): Promise<void>;
}

export interface LaunchOptions {
  /** Run the daemon inside this network namespace (`ip netns exec`: same pid, so RSS is the daemon's). */
  netns?: string;
  nodeArgs?: string[];
  /** Another build's daemon (--baseline: <its worktree>/dist/daemon.js); default this checkout's. */
  script?: string;
}

export function walbridgeEnv(sourceUrl: string, targetUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    SOURCE_DATABASE_URL: sourceUrl,
    TARGET_DATABASE_URL: targetUrl,
    WALBRIDGE_SCHEMAS: 'public,auth',
    LOG_LEVEL: 'info',
    WALBRIDGE_EXIT_ON_ERROR: 'true',
    ...extra,
  };
}

export async function launchWalbridge(env: Record<string, string>, opts: LaunchOptions = {}): Promise<Walbridge> {
  const startedAt = Date.now();
  const daemon = await startDaemon(env, {
    ...(opts.nodeArgs ? { nodeArgs: opts.nodeArgs } : {}),
    ...(opts.script ? { script: opts.script } : {}),
    ...(opts.netns ? { prefix: ['ip', 'netns', 'exec', opts.netns] } : {}),
  });
  const pid = daemon.child.pid;
  if (pid === undefined) throw new Error('walbridge did not start');
  const rss = new RssSampler(pid, 200);
  let stopped: Promise<void> | undefined;
  return {
    daemon,
    rss,
    startedAt,
    stop() {
      stopped ??= (async () => {
        if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
          const timer = setTimeout(() => daemon.kill('SIGKILL'), 30_000);
          await daemon.stop();
          clearTimeout(timer);
        }
        rss.stop();
      })();
      return stopped;
    },
  };
}

export interface CliRun {
  code: number | null;
  /** Each line it printed on stdout, with the time this process read it (ms since the epoch). */
  lines: Array<{ at: number; text: string }>;
  stderr: string;
  startedAt: number;
  endedAt: number;
}

/**
 * Run the built CLI (`walbridge <args>`) with walbridge's environment only, to its exit. Each
 * stdout line is timed as it arrives (stdout to a pipe is written synchronously on Linux, so a
 * line's time is when the command reached that point, within this process's event loop delay).
 */
export async function runWalbridgeCli(args: string[], env: Record<string, string>): Promise<CliRun> {
  const startedAt = Date.now();
  const child = spawnTracked(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
  const lines: CliRun['lines'] = [];
  let rest = '';
  child.stdout?.on('data', (b: Buffer) => {
    const at = Date.now();
    rest += b.toString('utf8');
    const parts = rest.split('\n');
    rest = parts.pop() ?? '';
    for (const text of parts) lines.push({ at, text });
  });
  // collect() keeps stderr (and reads stdout too, harmlessly: both listeners see every chunk).
  const r = await collect(child, startedAt);
  if (rest) lines.push({ at: Date.now(), text: rest });
  return { code: r.code, lines, stderr: r.stderr, startedAt, endedAt: Date.now() };
}

/** The daemon's error/warn lines and last output, for failure messages. */
export function daemonTail(w: Walbridge, n = 12): string {
  const errs = w.daemon
    .logs()
    .filter((l) => l.level === 'error' || l.level === 'fatal')
    .map((l) => `${String(l.msg)} ${JSON.stringify(l.err ?? '')}`);
  return [...errs.slice(-4), ...w.daemon.output.slice(-n)].join('\n');
}

/** A persistent connection to one database of a cluster (for polling at 50-100 ms). */
export async function connect(cluster: Cluster, database: string, host?: string): Promise<pg.Client> {
  const url = host ? cluster.url(database).replace('@127.0.0.1:', `@${host}:`) : cluster.url(database);
  const c = new pg.Client({ connectionString: url, application_name: 'walbridge-bench' });
  c.on('error', () => undefined);
  await c.connect();
  return c;
}

export async function recordedPhase(target: pg.Client): Promise<{ phase: string; appliedLsn: string | null } | null> {
  try {
    const r = await target.query<{ phase: string; applied_lsn: string | null }>('SELECT phase, applied_lsn::text FROM walbridge.pipeline');
    const row = r.rows[0];
    return row ? { phase: row.phase, appliedLsn: row.applied_lsn } : null;
  } catch {
    return null; // schema not created yet
  }
}

/** Poll the recorded phase until it is `phase`; throw with the daemon's output if it exits first. */
export async function waitForRecordedPhase(w: Walbridge, target: pg.Client, phase: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const p = await recordedPhase(target);
    if (p?.phase === phase) return Date.now();
    if (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null) {
      throw new Error(`walbridge exited before phase ${phase}:\n${daemonTail(w)}`);
    }
    if (p?.phase === 'error') throw new Error(`walbridge reports phase error:\n${daemonTail(w)}`);
    if (Date.now() > deadline) throw new Error(`walbridge did not reach phase ${phase} in ${timeoutMs / 1000} s (at ${p?.phase ?? 'none'}):\n${daemonTail(w)}`);
    await sleep(50);
  }
}

/** Wait until the recorded applied_lsn is at least `lsn`. Returns the time it was seen. */
export async function waitForApplied(w: Walbridge | null, target: pg.Client, lsn: string, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await target
      .query<{ done: boolean }>('SELECT applied_lsn >= $1::pg_lsn AS done FROM walbridge.pipeline', [lsn])
      .catch(() => ({ rows: [] as { done: boolean }[] }));
    if (r.rows[0]?.done) return Date.now();
    if (w && (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null)) throw new Error(`walbridge exited while applying:\n${daemonTail(w)}`);
    if (Date.now() > deadline) throw new Error(`applied_lsn did not reach ${lsn} in ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

export interface TableCopy {
  table: string;
  rows: number;
  bytes: number;
  seconds: number;
  rowsPerSec: number;
}

/** walbridge's own per-table copy timings ("copy finished" log lines). */
export function copyTimings(w: Walbridge): TableCopy[] {
  return w.daemon
    .logs()
    .filter((l) => l.msg === 'copy finished')
    .map((l) => ({
      table: String(l.table),
      rows: Number(l.rows),
      bytes: Number(l.bytes),
      seconds: Number(l.seconds),
      rowsPerSec: Number(l.rowsPerSec),
    }));
}

/** Time (ms since the daemon started) of the first log line with this message, or null. */
export function logTime(w: Walbridge, msg: string): number | null {
  const l = w.daemon.logs().find((x) => x.msg === msg);
  const t = typeof l?.time === 'number' ? l.time : typeof l?.time === 'string' ? Date.parse(l.time) : NaN;
  return Number.isFinite(t) ? t - w.startedAt : null;
}

/** One sample of a gauge from walbridge's /metrics. */
export async function metric(w: Walbridge, name: string): Promise<number | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${w.daemon.port}/metrics`, { signal: AbortSignal.timeout(2000) });
    const text = await res.text();
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Drop a slot once no walsender holds it any more (a stopped daemon's walsender exits a moment later). */
export async function dropSlotWhenFree(source: pg.Client, slot: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await source.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    const row = r.rows[0];
    if (!row) return;
    if (!row.active) {
      await source.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return;
    }
    if (Date.now() > deadline) throw new Error(`slot ${slot} still active after ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/**
 * Where walbridge's sessions spend their time: pg_stat_activity of one cluster sampled every
 * `everyMs`, counting (application_name, state, wait_event) of walbridge's sessions.
 */
export class ActivitySampler {
  private readonly counts = new Map<string, number>();
  private total = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(
    private readonly client: pg.Client,
    everyMs = 100,
  ) {
    this.done = (async () => {
      while (this.running) {
        try {
          const r = await this.client.query<{ app: string; st: string }>(
            `SELECT COALESCE(NULLIF(application_name, ''), backend_type) AS app,
                    COALESCE(state, '-') || COALESCE(' / ' || wait_event_type || ':' || wait_event, '') AS st
               FROM pg_stat_activity
              WHERE pid <> pg_backend_pid() AND (application_name LIKE 'walbridge%' OR backend_type = 'walsender')
                AND application_name NOT LIKE 'walbridge-bench%'`,
          );
          this.total++;
          for (const row of r.rows) {
            const k = `${row.app}: ${row.st}`;
            this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
          }
        } catch {
          // a missed sample
        }
        await sleep(everyMs);
      }
    })();
  }

  /** Share of samples (0..1) per "application: state / wait", most frequent first. */
  async stop(): Promise<Array<[string, number]>> {
    this.running = false;
    await this.done;
    return [...this.counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, n / Math.max(1, this.total)]);
  }
}
