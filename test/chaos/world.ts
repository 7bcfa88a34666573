/**
 * A world for chaos scenarios: a source and a target cluster with distinctive passwords, a TCP
 * proxy in front of each (walbridge reaches both only through them, so a test can cut either
 * network), the app's schema and data, an app-like write load, and every walbridge instance
 * started in it. Everything the instances show (logs, pages, metrics) and every CLI output is
 * searched for the passwords.
 *
 * The test's own connections (load, checks, comparisons) go to the servers directly.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { startCluster, type Cluster, type PgMajor } from '../harness/cluster.js';
import { checkContent, describeContent, type ContentCheck } from '../harness/diff.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad, type WriteLoad, type WriteLoadStats } from '../harness/fixture.js';
import { startProxy, type TcpProxy } from '../harness/proxy.js';
import { runCli, startDaemon, type CliResult, type DaemonProcess } from '../helpers/daemon.js';
import { Exposure, httpGet, metricValue, secretForms } from '../helpers/observe.js';
import { tableRows, type TableRow } from '../helpers/state.js';

export interface WorldOptions {
  name: string;
  sourceMajor?: PgMajor;
  targetMajor?: PgMajor;
  sourceSettings?: Record<string, string>;
  targetSettings?: Record<string, string>;
  sourcePassword: string;
  targetPassword: string;
  seedScale?: number;
  /** Extra rows in public.messages, so that the copy takes a while. */
  bulkMessages?: number;
  exposure: Exposure;
}

/** Phases recorded on the target in which an instance is the writer. */
const WRITING = new Set(['backfill', 'streaming', 'cutover']);

export const LOG_DIVERGENCE = 'rows to change were not found on the target';

function qualified(table: string): string {
  const dot = table.indexOf('.');
  return `${pg.escapeIdentifier(table.slice(0, dot))}.${pg.escapeIdentifier(table.slice(dot + 1))}`;
}

/** The URL of `c` (database `database`) with its port replaced by the proxy's. */
function viaProxy(c: Cluster, proxy: TcpProxy, database?: string): string {
  const u = new URL(c.url(database));
  u.port = String(proxy.port);
  return u.toString();
}

/**
 * Another migration from the same source: into a database of its own on the target cluster,
 * with its own slot and publication (and so its own fence). Without one, a world runs the
 * migration into the target's `app` database under walbridge's default names.
 */
export interface Migration {
  /** The target database, on the target cluster. */
  database: string;
  /** WALBRIDGE_SLOT and WALBRIDGE_PUBLICATION. */
  slot: string;
}

const migrationEnv = (m?: Migration): Record<string, string> => (m ? { WALBRIDGE_SLOT: m.slot, WALBRIDGE_PUBLICATION: m.slot } : {});

export class World {
  readonly daemons: DaemonProcess[] = [];
  current: DaemonProcess | null = null;
  load: WriteLoad | null = null;
  /** Error-level log lines are expected right now (a scenario that provokes phase error). */
  allowErrors = false;
  private readonly killed = new Set<DaemonProcess>();
  /** Instances that stop by themselves once a cutover is recorded (exit status 0). */
  private readonly stopsWhenDone = new Set<DaemonProcess>();
  /** Per instance, how many of its log lines were looked at already by a scenario that expected errors. */
  private readonly acknowledged = new Map<DaemonProcess, number>();
  private readonly labels = new Map<DaemonProcess, string>();
  private readonly unexpected: string[] = [];
  private watcher: pg.Client | null = null;
  private samplerStop = false;
  private sampler: Promise<void> | null = null;
  private loadSeed = 1;
  /** Every load started and not stopped yet: a scenario that failed may have left one running. */
  private readonly loads = new Set<WriteLoad>();

  private constructor(
    readonly name: string,
    readonly source: Cluster,
    readonly target: Cluster,
    readonly sourceProxy: TcpProxy,
    readonly targetProxy: TcpProxy,
    readonly exposure: Exposure,
  ) {}

  static async create(opts: WorldOptions): Promise<World> {
    opts.exposure.addSecrets(...secretForms(`${opts.name} source password`, opts.sourcePassword), ...secretForms(`${opts.name} target password`, opts.targetPassword));
    const started = await Promise.allSettled([
      startCluster({ major: opts.sourceMajor ?? 15, name: `${opts.name}-source`, password: opts.sourcePassword, ...(opts.sourceSettings ? { settings: opts.sourceSettings } : {}) }),
      startCluster({ major: opts.targetMajor ?? 17, name: `${opts.name}-target`, password: opts.targetPassword, ...(opts.targetSettings ? { settings: opts.targetSettings } : {}) }),
    ]);
    const [s, t] = started;
    if (s.status !== 'fulfilled' || t.status !== 'fulfilled') {
      await Promise.all(started.map((r) => (r.status === 'fulfilled' ? r.value.destroy() : undefined)));
      throw (started.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
    }
    const source = s.value;
    const target = t.value;
    const [sp, tp] = await Promise.all([startProxy(source.port), startProxy(target.port)]);
    const w = new World(opts.name, source, target, sp, tp, opts.exposure);
    try {
      await source.withClient(async (c) => {
        await createAppSchema(c);
        await seedAppData(c, { scale: opts.seedScale ?? 1 });
        if (opts.bulkMessages) {
          await c.query(
            `INSERT INTO public.messages (user_id, role, content, telegram_message_id, metadata, created_at)
             SELECT (SELECT min(id) FROM public.users), 'user', repeat('history ' || g || ' ', 12), g,
                    jsonb_build_object('history', g), now() - g * interval '1 second'
               FROM generate_series(1, $1::int) AS g`,
            [opts.bulkMessages],
          );
        }
        await c.query('ANALYZE');
      });
      await target.withClient((c) => createAppSchema(c, { target: true }));
      w.startSampler();
    } catch (err) {
      await w.destroy();
      throw err;
    }
    return w;
  }

  /** walbridge's environment: both servers through the proxies. */
  daemonEnv(m?: Migration): Record<string, string> {
    return {
      SOURCE_DATABASE_URL: viaProxy(this.source, this.sourceProxy),
      TARGET_DATABASE_URL: viaProxy(this.target, this.targetProxy, m?.database),
      ...migrationEnv(m),
      WALBRIDGE_SCHEMAS: 'public,auth',
      WALBRIDGE_COPY_JOBS: '2',
      // The bigger tables are copied in block ranges, so kills land in those too.
      WALBRIDGE_COPY_SPLIT_MB: '1',
      // Held to a pace a large production copy has, so that the random kills meant for the
      // copy land in it: at full speed the copy of this data set is over in a second or two.
      WALBRIDGE_COPY_MAX_MBPS: '4',
    };
  }

  /** The operator's environment for the CLI: the servers directly. */
  cliEnv(m?: Migration): Record<string, string> {
    return { SOURCE_DATABASE_URL: this.source.url(), TARGET_DATABASE_URL: this.target.url(m?.database), WALBRIDGE_SCHEMAS: 'public,auth', ...migrationEnv(m) };
  }

  async cli(args: string[], m?: Migration): Promise<CliResult> {
    return this.exposure.cli(`${this.name}${m ? ` ${m.slot}` : ''}: walbridge ${args.join(' ')}`, await runCli(args, this.cliEnv(m)));
  }

  // --- instances ------------------------------------------------------------------------------

  /**
   * Start an instance. `stopsWhenDone`: it is expected to exit by itself, with status 0, once a
   * cutover is recorded (any other exit it was not killed for still fails the run). `env`:
   * settings over daemonEnv()'s.
   */
  async launch(opts: { migration?: Migration; stopsWhenDone?: boolean; env?: Record<string, string> } = {}): Promise<DaemonProcess> {
    const d = await startDaemon({ ...this.daemonEnv(opts.migration), ...opts.env });
    const label = `${this.name}${opts.migration ? ` ${opts.migration.slot}` : ''} instance #${this.daemons.length + 1} (pid ${d.child.pid})`;
    this.daemons.push(d);
    this.labels.set(d, label);
    this.exposure.watchDaemon(d, label);
    if (opts.stopsWhenDone) this.stopsWhenDone.add(d);
    void d.exited.then(({ code, signal }) => {
      if (!this.killed.has(d) && !(this.stopsWhenDone.has(d) && code === 0)) {
        this.unexpected.push(`${label} exited by itself (code ${code}, signal ${signal}); its last output:\n${d.output.slice(-20).join('\n')}`);
      }
    });
    return d;
  }

  /** Start an instance if none is running (a failed scenario may have left none). */
  async ensureInstance(): Promise<void> {
    const d = this.current;
    if (d && d.child.exitCode === null && d.child.signalCode === null && !this.killed.has(d)) return;
    this.current = await this.launch();
  }

  /** A cutover is coming: `d` will stop by itself, with exit status 0, once it is recorded. */
  expectStopWhenDone(d: DaemonProcess): void {
    this.stopsWhenDone.add(d);
  }

  label(d: DaemonProcess): string {
    return this.labels.get(d) ?? '?';
  }

  async sigkill(d: DaemonProcess): Promise<void> {
    this.killed.add(d);
    d.kill('SIGKILL');
    await d.exited;
  }

  async sigterm(d: DaemonProcess): Promise<number | null> {
    this.killed.add(d);
    const { code } = await d.stop();
    return code;
  }

  /** Throws if an instance died by itself or (unless allowed) reported an error it cannot get past. */
  assertHealthy(context: string): void {
    if (this.unexpected.length > 0) throw new Error(`while waiting for ${context}: ${this.unexpected.join('\n\n')}`);
    if (this.allowErrors) return;
    for (const d of this.daemons) {
      const bad = d
        .logs()
        .slice(this.acknowledged.get(d) ?? 0)
        .find((l) => l.level === 'error' || l.level === 'fatal');
      if (bad) throw new Error(`while waiting for ${context}: ${this.label(d)} logged ${bad.level}: ${bad.msg ?? ''}\n${JSON.stringify(bad.err ?? '')}`);
    }
  }

  /** The errors logged so far were expected (a scenario provoked them); later ones count again. */
  acknowledgeErrors(): void {
    for (const d of this.daemons) this.acknowledged.set(d, d.logs().length);
    this.allowErrors = false;
  }

  /** The last lines of the current instance, for failure messages. */
  tail(lines = 15): string {
    return this.current ? `${this.label(this.current)}:\n${this.current.output.slice(-lines).join('\n')}` : '(no instance)';
  }

  /** Poll until pred holds; fails at once if an instance died or failed meanwhile. */
  async until(pred: () => Promise<boolean> | boolean, what: string, timeoutMs = 120_000, intervalMs = 100): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastError: unknown;
    for (;;) {
      this.assertHealthy(what);
      try {
        if (await pred()) return;
        lastError = undefined;
      } catch (err) {
        lastError = err;
      }
      if (Date.now() > deadline) {
        const why = lastError === undefined ? '' : ` (last error: ${lastError instanceof Error ? lastError.message : String(lastError)})`;
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}\n${this.tail()}\n${await this.sessions()}\n${await this.serverLogs()}`);
      }
      await sleep(intervalMs);
    }
  }

  /** Wait `ms` (the length of a fault, or a random moment), failing early if an instance fails. */
  async hold(ms: number, what: string): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      this.assertHealthy(what);
      await sleep(Math.min(250, end - Date.now()));
    }
  }

  // --- reading state ---------------------------------------------------------------------------

  /** One long-lived connection to the target for polling, reopened after a failure. */
  private async watch<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
    if (!this.watcher) {
      const c = new pg.Client({ connectionString: this.target.url(), connectionTimeoutMillis: 5000, application_name: 'walbridge-test-watch' });
      c.on('error', () => undefined);
      await c.connect();
      this.watcher = c;
    }
    try {
      return (await this.watcher.query<T>(sql, params)).rows;
    } catch (err) {
      await this.watcher.end().catch(() => undefined);
      this.watcher = null;
      throw err;
    }
  }

  /** walbridge's recorded phase on the target (null before the first start). */
  async phase(): Promise<string | null> {
    const rows = await this.watch<{ phase: string }>(`SELECT phase FROM walbridge.pipeline`).catch(() => []);
    return rows[0]?.phase ?? null;
  }

  async tables(): Promise<TableRow[]> {
    return tableRows(this.target);
  }

  /**
   * The recorded copy state of one table ('pending', 'copying', 'copied'; null if none), read
   * on the polling connection. Only once walbridge's schema exists (phase() is not null).
   */
  async tableState(table: string): Promise<string | null> {
    const rows = await this.watch<{ state: string }>(`SELECT state FROM walbridge.tables WHERE schema_name || '.' || table_name = $1`, [table]);
    return rows[0]?.state ?? null;
  }

  /** walbridge's sessions on the target that wait for a lock `pid` holds (their application names). */
  async waitingOn(pid: number): Promise<string[]> {
    const rows = await this.watch<{ name: string }>(
      `SELECT application_name AS name FROM pg_stat_activity WHERE application_name LIKE 'walbridge %' AND $1::int = ANY(pg_blocking_pids(pid))`,
      [pid],
    );
    return rows.map((r) => r.name);
  }

  /** Whether walbridge's slot is in use on the source (a walsender streams from it). */
  async slotActive(slot = 'walbridge'): Promise<boolean> {
    const [row] = await this.source.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    return row?.active === true;
  }

  /**
   * Every session on both servers that is not idle (running, waiting, or idle in a
   * transaction), with what it waits for and who blocks it: what a timed-out wait prints.
   */
  async sessions(): Promise<string> {
    const sql = `SELECT pid, backend_type, application_name, state, wait_event_type, wait_event,
                        to_char(query_start, 'HH24:MI:SS.MS') AS query_start,
                        round(extract(epoch FROM clock_timestamp() - query_start)::numeric, 1)::text AS seconds,
                        pg_blocking_pids(pid) AS blocked_by,
                        left(regexp_replace(query, '\\s+', ' ', 'g'), 200) AS query
                   FROM pg_stat_activity
                  WHERE pid <> pg_backend_pid() AND backend_type IN ('client backend', 'walsender') AND state IS DISTINCT FROM 'idle'
                  ORDER BY backend_start`;
    type Row = { pid: number; backend_type: string; application_name: string; state: string | null; wait_event_type: string | null; wait_event: string | null; query_start: string | null; seconds: string | null; blocked_by: number[]; query: string };
    const list = async (side: string, c: Cluster): Promise<string> => {
      const client = new pg.Client({ connectionString: c.url(), connectionTimeoutMillis: 3000, statement_timeout: 3000, application_name: 'walbridge-test-diagnose' });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const rows = (await client.query<Row>(sql)).rows;
        const lines = rows.map(
          (r) =>
            `  pid ${r.pid} ${r.application_name || '(no name)'} [${r.backend_type}]: ${r.state ?? '?'}` +
            (r.wait_event ? `, waiting on ${r.wait_event_type}/${r.wait_event}` : '') +
            `, query started ${r.query_start ?? '?'} (${r.seconds ?? '?'} s ago)` +
            (r.blocked_by.length > 0 ? `, blocked by ${r.blocked_by.join(', ')}` : '') +
            `: ${r.query}`,
        );
        return `${side} sessions not idle (${rows.length}):${lines.length > 0 ? `\n${lines.join('\n')}` : ' none'}`;
      } catch (err) {
        return `${side} sessions: could not be listed (${err instanceof Error ? err.message : String(err)})`;
      } finally {
        void client.end().catch(() => undefined);
      }
    };
    const timeout = (side: string) => sleep(8000, undefined, { ref: false }).then(() => `${side} sessions: could not be listed (no answer in 8 s)`);
    const out = await Promise.all([
      Promise.race([list('source', this.source), timeout('source')]),
      Promise.race([list('target', this.target), timeout('target')]),
    ]);
    return out.join('\n');
  }

  /** The last lines of both servers' logs (errors, walsender exits), for a failure message. */
  async serverLogs(lines = 25): Promise<string> {
    const [s, t] = await Promise.all([this.source.logTail(lines), this.target.logTail(lines)]);
    return `--- source server log ---\n${s}\n--- target server log ---\n${t}`;
  }

  async sourceLsn(): Promise<string> {
    const [row] = await this.source.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
    return (row as { lsn: string }).lsn;
  }

  /**
   * Whether the target's position passed `lsn`: the applied position, or during the copy the
   * spool's (what arrives while tables are copied is made durable on the target and applied after).
   * With `spooled`, the spool's during its drain (phase catchup) too: for when the test holds
   * the drain, and so the applied position, on purpose.
   */
  async passed(lsn: string, opts: { spooled?: boolean } = {}): Promise<boolean> {
    const spooledIn = opts.spooled ? ['init', 'backfill', 'catchup'] : ['init', 'backfill'];
    const rows = await this.watch<{ ok: boolean }>(
      `SELECT (CASE WHEN phase = ANY($2::text[]) THEN spooled_lsn ELSE applied_lsn END) >= $1::pg_lsn AS ok FROM walbridge.pipeline`,
      [lsn, spooledIn],
    );
    return rows[0]?.ok === true;
  }

  /** Seconds from `fromMs` until the target's position passes `lsn` (see passed()). */
  async recovery(fromMs: number, lsn: string, what: string, timeoutMs = 240_000, opts: { spooled?: boolean } = {}): Promise<number> {
    await this.until(() => this.passed(lsn, opts), `the target to pass source LSN ${lsn} (${what})`, timeoutMs, 50);
    return Math.round((Date.now() - fromMs) / 100) / 10;
  }

  /** Streaming, with everything the source wrote until now applied. */
  async catchUp(timeoutMs = 240_000): Promise<void> {
    const lsn = await this.sourceLsn();
    await this.until(
      async () => (await this.phase()) === 'streaming' && (await this.passed(lsn)),
      `the target to apply everything up to source LSN ${lsn}`,
      timeoutMs,
    );
  }

  // --- the app ---------------------------------------------------------------------------------

  startLoad(opts: { ratePerSec?: number; seed?: number; truncateEvery?: number } = {}): WriteLoad {
    const l = startWriteLoad(this.source.url(), { ratePerSec: opts.ratePerSec ?? 60, truncateEvery: opts.truncateEvery ?? 150, seed: opts.seed ?? this.loadSeed++, clients: 2 });
    this.loads.add(l);
    this.load = l;
    return l;
  }

  /**
   * Stop the app: the current load and any other still running (one a failed scenario left
   * would otherwise keep writing behind the next comparison). Resolves with the current
   * load's stats once its in-flight transactions ended.
   */
  async stopLoad(): Promise<WriteLoadStats | null> {
    const l = this.load;
    this.load = null;
    const all = [...this.loads];
    this.loads.clear();
    const stopped = await Promise.allSettled(all.map((x) => x.stop()));
    const failed = stopped.find((x): x is PromiseRejectedResult => x.status === 'rejected');
    if (failed) throw failed.reason;
    return l ? l.stop() : null;
  }

  // --- pages -----------------------------------------------------------------------------------

  /** /status.json of an instance (scanned for secrets). */
  async status(d: DaemonProcess): Promise<{ phase: string; lastError: { kind: string; message: string; hint?: string } | null; slot: { walStatus: string | null } | null }> {
    return JSON.parse((await httpGet(d.port, '/status.json', this.exposure, `${this.label(d)} `)).body) as never;
  }

  async metrics(d: DaemonProcess): Promise<string> {
    return (await httpGet(d.port, '/metrics', this.exposure, `${this.label(d)} `)).body;
  }

  /** Fetch what an operator would look at, so it is searched for secrets too. */
  async capturePages(d: DaemonProcess): Promise<void> {
    for (const p of ['/status.json', '/metrics', '/', '/readyz']) await httpGet(d.port, p, this.exposure, `${this.label(d)} `).catch(() => undefined);
  }

  /** Every second, the pages of every live instance are fetched and searched for secrets. */
  private startSampler(): void {
    this.sampler = (async () => {
      let n = 0;
      while (!this.samplerStop) {
        await sleep(1000);
        for (const d of this.daemons) {
          if (d.child.exitCode !== null || d.child.signalCode !== null || this.killed.has(d)) continue;
          await httpGet(d.port, '/status.json', this.exposure, `${this.label(d)} `).catch(() => undefined);
          await httpGet(d.port, '/metrics', this.exposure, `${this.label(d)} `).catch(() => undefined);
          if (n % 10 === 0) await httpGet(d.port, '/', this.exposure, `${this.label(d)} `).catch(() => undefined);
        }
        n++;
      }
    })();
  }

  /** Per instance, where the current scenario's log lines start. */
  private readonly scenarioStart = new Map<DaemonProcess, number>();

  /** A new scenario starts: divergenceWarnings() looks at log lines from here on. */
  markScenarioStart(): void {
    for (const d of this.daemons) this.scenarioStart.set(d, d.logs().length);
  }

  /**
   * Log lines (of this scenario) that say a change found no row to change on the target: the
   * target lacked a row the source had (lost before), or a change was applied twice.
   */
  divergenceWarnings(opts: { except?: string[] } = {}): string[] {
    return this.daemons.flatMap((d) =>
      d
        .logs()
        .slice(this.scenarioStart.get(d) ?? 0)
        .filter((l) => l.msg === LOG_DIVERGENCE && !(opts.except ?? []).includes(String(l.table)))
        .map((l) => `${this.label(d)}: ${JSON.stringify(l)}`),
    );
  }

  /** What every instance of this scenario did, one line per log record of interest, for a failure message. */
  logDigest(): string {
    const out: string[] = [];
    for (const d of this.daemons) {
      const logs = d.logs().slice(this.scenarioStart.get(d) ?? 0);
      if (logs.length === 0) continue;
      out.push(`--- ${this.label(d)}${this.killed.has(d) ? ' (stopped by the test)' : ''}`);
      for (const l of logs) {
        if (l.level === 'info' && !/spool|stream|copy|resum|slot|backfill|standby|stopp/i.test(String(l.msg))) continue;
        const extra = ['component', 'table', 'lsn', 'op', 'expected', 'matched', 'messages'].flatMap((k) => (l[k] === undefined ? [] : [`${k}=${String(l[k])}`]));
        out.push(`  ${String(l.time).slice(11, 23)} ${l.level} ${l.msg ?? ''} ${extra.join(' ')}`);
      }
    }
    return out.join('\n');
  }

  /** Largest resident memory any instance reported on /metrics right now. */
  async rss(d: DaemonProcess): Promise<number | null> {
    try {
      return metricValue(await this.metrics(d), 'process_resident_memory_bytes');
    } catch {
      return null;
    }
  }

  // --- endings ---------------------------------------------------------------------------------

  /** Stop the app, let walbridge catch up, and compare every table in full. */
  async settleAndCompare(timeoutMs = 240_000): Promise<ContentCheck> {
    await this.stopLoad();
    await this.catchUp(timeoutMs);
    const c = await checkContent(this.source.url(), this.target.url(), APP_TABLES);
    return c;
  }

  /** Assert what a user checks at the end: every table equal, no change applied twice, no secret shown. */
  assertClean(c: ContentCheck): void {
    assert.equal(c.lost + c.doubled + c.changed, 0, `rows lost ${c.lost}, doubled ${c.doubled}, changed ${c.changed}:\n${describeContent(c)}`);
    assert.ok(c.diffs.every((d) => d.equal), `tables differ:\n${describeContent(c)}`);
    // The load TRUNCATEs webhook_dedupe every 150 transactions. A TRUNCATE committed after the
    // slot's consistent point but before that table is copied makes the copy read it empty
    // (PostgreSQL's TRUNCATE is not MVCC-safe), so deletes streamed before that TRUNCATE find
    // nothing; the streamed TRUNCATE then makes both sides equal again. Those warnings are
    // counted by the scenario, not failed on (see the rewrite scenario for the harmful case).
    const div = this.divergenceWarnings({ except: ['public.webhook_dedupe'] });
    assert.deepEqual(
      div,
      [],
      'every UPDATE and DELETE found its rows on the target (a change that does not was lost or applied twice, even if a later TRUNCATE hid it); ' +
        `the instances' logs:\n${this.logDigest()}`,
    );
    const { leaks } = this.exposure.check();
    assert.deepEqual(leaks, [], 'no password in anything the run printed or served');
  }

  /**
   * The documented way to start over (after an invalidated slot, or for another round):
   * stop walbridge, `walbridge teardown --target`, empty the target's tables.
   */
  async resync(): Promise<void> {
    if (this.current) {
      await this.sigterm(this.current);
      this.current = null;
    }
    const r = await this.cli(['teardown', '--target']);
    assert.equal(r.code, 0, `walbridge teardown --target failed:\n${r.out}`);
    await this.target.query(`TRUNCATE ${APP_TABLES.map(qualified).join(', ')}`);
  }

  async destroy(): Promise<void> {
    this.samplerStop = true;
    for (const d of this.daemons) {
      this.killed.add(d);
      d.kill('SIGKILL');
    }
    await this.stopLoad().catch(() => undefined);
    await this.sampler?.catch(() => undefined);
    await this.watcher?.end().catch(() => undefined);
    await Promise.all([this.sourceProxy.close(), this.targetProxy.close()]);
    await Promise.all([this.source.destroy(), this.target.destroy()]);
  }
}

export { WRITING };
