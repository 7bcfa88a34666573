/**
 * walbridge's peers, each run into its own fresh target database with the tables pre-created:
 *   - native logical replication: CREATE PUBLICATION on the source, CREATE SUBSCRIPTION
 *     ... WITH (copy_data = true) on the target;
 *   - pg_dump --data-only | psql (Debian's client tools, 15);
 *   - pgcopydb copy table-data --table-jobs 2 (Debian package pgcopydb; installed if missing).
 * The client tools run with session_replication_role = replica on the target (as the native
 * subscription and walbridge do), so foreign keys and triggers on the pre-created tables do not fire.
 */
import fs from 'node:fs';
import type { Cluster } from '../test/harness/cluster.js';
import { collect, lastLines, runTool, sleep, spawnTracked, tempDir, toolEnv } from './proc.js';

export const NATIVE = 'bench_native';
const PG_DUMP = '/usr/bin/pg_dump';
const PSQL = '/usr/bin/psql';
const PGCOPYDB = '/usr/bin/pgcopydb';
/** Debian's pg_recvlogical (postgresql-client-15): the walsender's pace with a consumer that does nothing. */
export const PG_RECVLOGICAL = '/usr/bin/pg_recvlogical';
const REPLICA_ROLE = { PGOPTIONS: '-c session_replication_role=replica' };

/** libpq keyword/value connection string (for CREATE SUBSCRIPTION). */
export function conninfo(cluster: Cluster, database: string, host = cluster.host, port = cluster.port): string {
  const q = (v: string) => `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  return `host=${q(host)} port=${port} dbname=${q(database)} user=postgres password=${q(cluster.password)} sslmode=disable`;
}

const lit = (s: string) => `'${s.replace(/'/g, "''")}'`;

// ---------------------------------------------------------------------------------------------
// Native logical replication
// ---------------------------------------------------------------------------------------------

export const nativeCommands = {
  publication: `CREATE PUBLICATION ${NATIVE} FOR TABLES IN SCHEMA public, auth`,
  subscription: `CREATE SUBSCRIPTION ${NATIVE} CONNECTION '…' PUBLICATION ${NATIVE} WITH (copy_data = true)`,
};

export async function createNativePublication(source: Cluster, database = 'app'): Promise<void> {
  await source.query(`DROP PUBLICATION IF EXISTS ${NATIVE}`, [], database);
  await source.query(nativeCommands.publication, [], database);
}

/** CREATE SUBSCRIPTION with copy_data; resolves (seconds) once every table's srsubstate is 'r'. */
export async function nativeCopy(source: Cluster, target: Cluster, targetDb: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  await target.query(
    `CREATE SUBSCRIPTION ${NATIVE} CONNECTION ${lit(conninfo(source, 'app'))} PUBLICATION ${NATIVE} WITH (copy_data = true)`,
    [],
    targetDb,
  );
  await target.withClient(async (c) => {
    for (;;) {
      const r = await c.query<{ total: string; ready: string }>(
        `SELECT count(*)::text AS total, count(*) FILTER (WHERE srsubstate = 'r')::text AS ready
           FROM pg_subscription_rel sr JOIN pg_subscription s ON s.oid = sr.srsubid WHERE s.subname = $1`,
        [NATIVE],
      );
      const row = r.rows[0];
      if (row && Number(row.total) > 0 && row.total === row.ready) return;
      if (Date.now() - t0 > timeoutMs) throw new Error(`native subscription not ready after ${timeoutMs / 1000} s (${row?.ready}/${row?.total} tables)`);
      await sleep(100);
    }
  }, targetDb);
  return (Date.now() - t0) / 1000;
}

/** DISABLE and wait until the slot on the source is no longer in use (the apply worker is gone). */
export async function nativeDisable(source: Cluster, target: Cluster, targetDb: string): Promise<void> {
  await target.query(`ALTER SUBSCRIPTION ${NATIVE} DISABLE`, [], targetDb);
  const t0 = Date.now();
  for (;;) {
    const [r] = await source.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [NATIVE]);
    if (r && !r.active) return;
    if (Date.now() - t0 > 60_000) throw new Error('native subscription still active 60 s after DISABLE');
    await sleep(50);
  }
}

export async function nativeEnable(target: Cluster, targetDb: string): Promise<void> {
  await target.query(`ALTER SUBSCRIPTION ${NATIVE} ENABLE`, [], targetDb);
}

/**
 * Native is caught up to `lsn` when its slot's confirmed_flush_lsn on the source and the
 * subscription's latest_end_lsn have both reached it. Returns the time both were seen.
 */
export async function waitNativeConfirmed(source: Cluster, target: Cluster, targetDb: string, lsn: string, timeoutMs: number): Promise<number> {
  const t0 = Date.now();
  let slotDone = false;
  let subDone = false;
  await source.withClient(async (s) => {
    await target.withClient(async (t) => {
      for (;;) {
        if (!slotDone) {
          const r = await s.query<{ ok: boolean }>('SELECT confirmed_flush_lsn >= $2::pg_lsn AS ok FROM pg_replication_slots WHERE slot_name = $1', [NATIVE, lsn]);
          slotDone = r.rows[0]?.ok === true;
        }
        if (!subDone) {
          const r = await t.query<{ ok: boolean }>(
            'SELECT bool_or(latest_end_lsn >= $2::pg_lsn) AS ok FROM pg_stat_subscription WHERE subname = $1',
            [NATIVE, lsn],
          );
          subDone = r.rows[0]?.ok === true;
        }
        if (slotDone && subDone) return;
        if (Date.now() - t0 > timeoutMs) throw new Error(`native not confirmed up to ${lsn} after ${timeoutMs / 1000} s (slot ${slotDone}, subscription ${subDone})`);
        await sleep(50);
      }
    }, targetDb);
  }, 'app');
  return Date.now();
}

export async function dropNative(source: Cluster, target: Cluster, targetDb: string | null): Promise<void> {
  if (targetDb) {
    await target.query(`DROP SUBSCRIPTION IF EXISTS ${NATIVE}`, [], targetDb).catch(async () => {
      // Source unreachable: detach the slot so DROP SUBSCRIPTION does not need it, then drop it there.
      await target.query(`ALTER SUBSCRIPTION ${NATIVE} DISABLE`, [], targetDb).catch(() => undefined);
      await target.query(`ALTER SUBSCRIPTION ${NATIVE} SET (slot_name = NONE)`, [], targetDb).catch(() => undefined);
      await target.query(`DROP SUBSCRIPTION IF EXISTS ${NATIVE}`, [], targetDb).catch(() => undefined);
    });
  }
  await source
    .query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 OR slot_name LIKE 'pg\\_%\\_sync\\_%'`, [NATIVE])
    .catch(() => undefined);
  await source.query(`DROP PUBLICATION IF EXISTS ${NATIVE}`).catch(() => undefined);
}

// ---------------------------------------------------------------------------------------------
// pg_dump | psql
// ---------------------------------------------------------------------------------------------

export const pgDumpCommand = (src: string, tgt: string) =>
  `${PG_DUMP} --data-only --no-owner --no-privileges -d ${src} | PGOPTIONS='-c session_replication_role=replica' ${PSQL} -X -q -v ON_ERROR_STOP=1 -d ${tgt}`;

/** pg_dump --data-only piped into psql; seconds. Throws with both tools' stderr on failure. */
export async function pgDumpPsql(sourceUrl: string, targetUrl: string): Promise<number> {
  const t0 = Date.now();
  const dump = spawnTracked(PG_DUMP, ['--data-only', '--no-owner', '--no-privileges', '-d', sourceUrl]);
  const restore = spawnTracked(PSQL, ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', targetUrl], { env: toolEnv(REPLICA_ROLE) });
  dump.stdin?.end();
  dump.stdout?.pipe(restore.stdin as NodeJS.WritableStream);
  // collect() must not also read dump.stdout: only stderr of the dump is kept.
  let dumpErr = '';
  dump.stderr?.on('data', (b: Buffer) => (dumpErr = (dumpErr + b.toString()).slice(-20_000)));
  const dumpExit = new Promise<number | null>((resolve) => dump.once('close', (code) => resolve(code)));
  const [dumpCode, r] = await Promise.all([dumpExit, collect(restore, t0)]);
  if (dumpCode !== 0 || r.code !== 0) {
    throw new Error(`pg_dump exit ${dumpCode}, psql exit ${r.code}:\n${lastLines(dumpErr)}\n${lastLines(r.stderr)}`);
  }
  return (Date.now() - t0) / 1000;
}

// ---------------------------------------------------------------------------------------------
// pgcopydb
// ---------------------------------------------------------------------------------------------

export interface ToolCheck {
  ok: boolean;
  version?: string;
  why?: string;
}

/** pgcopydb present (installed with apt-get when missing and we are root)? */
export async function ensurePgcopydb(log: (s: string) => void): Promise<ToolCheck> {
  if (!fs.existsSync(PGCOPYDB)) {
    if (process.getuid?.() !== 0) return { ok: false, why: 'pgcopydb is not installed (apt-get install pgcopydb; not root here)' };
    log('pgcopydb is missing: apt-get install -y pgcopydb …');
    const env = toolEnv({ DEBIAN_FRONTEND: 'noninteractive' });
    let r = await runTool('apt-get', ['install', '-y', 'pgcopydb'], { env });
    if (r.code !== 0) {
      await runTool('apt-get', ['update'], { env });
      r = await runTool('apt-get', ['install', '-y', 'pgcopydb'], { env });
    }
    if (r.code !== 0 || !fs.existsSync(PGCOPYDB)) return { ok: false, why: `apt-get install pgcopydb failed: ${lastLines(r.stderr, 2)}` };
  }
  const v = await runTool(PGCOPYDB, ['--version']);
  const version = /pgcopydb version (\S+)/.exec(v.stdout + v.stderr)?.[1];
  return { ok: true, ...(version ? { version } : {}) };
}

export const pgcopydbCommand = (src: string, tgt: string, dir: string) =>
  `PGOPTIONS='-c session_replication_role=replica' ${PGCOPYDB} copy table-data --source ${src} --target ${tgt} --table-jobs 2 --dir ${dir}`;

/** pgcopydb copy table-data --table-jobs 2; seconds. Throws with its last log lines on failure. */
export async function pgcopydb(sourceUrl: string, targetUrl: string): Promise<number> {
  const dir = tempDir('pgcopydb');
  const r = await runTool(PGCOPYDB, ['copy', 'table-data', '--source', sourceUrl, '--target', targetUrl, '--table-jobs', '2', '--dir', dir], {
    env: toolEnv({ ...REPLICA_ROLE, TMPDIR: dir }),
  });
  fs.rmSync(dir, { recursive: true, force: true });
  if (r.code !== 0) {
    const errs = (r.stderr + r.stdout)
      .split('\n')
      .filter((l) => /ERROR|FATAL/.test(l))
      .slice(0, 4)
      .join('\n');
    throw new Error(`pgcopydb exit ${r.code}:\n${errs || lastLines(r.stderr)}`);
  }
  return r.seconds;
}

// ---------------------------------------------------------------------------------------------
// pgcopydb compare data (the cutover scenario's verify throughput)
// ---------------------------------------------------------------------------------------------

/** Debian's pgcopydb; `--pgcopydb-compare PATH` names another (Debian 12's 0.10 has no `compare`). */
export const DEFAULT_PGCOPYDB = PGCOPYDB;
/** Tables compared at once, by pgcopydb compare data and by walbridge verify (its default). */
export const COMPARE_JOBS = 4;

export const pgcopydbCompareCommand = (bin: string) =>
  `${bin} compare data --source <source-url> --target <target-url> --table-jobs ${COMPARE_JOBS} --dir <tmpdir>`;

/** Passwords out of a tool's output, whatever it prints of the URLs it was given. */
function scrub(text: string, urls: string[]): string {
  let out = text;
  for (const u of urls) {
    const pw = decodeURIComponent(new URL(u).password);
    if (pw) out = out.split(pw).join('****').split(encodeURIComponent(pw)).join('****');
  }
  return out;
}

/** Does this pgcopydb have `compare data` (0.13 on)? With its version. */
export async function pgcopydbCompareTool(bin: string): Promise<ToolCheck> {
  if (!fs.existsSync(bin)) return { ok: false, why: `${bin} does not exist` };
  const v = await runTool(bin, ['--version']);
  const version = /pgcopydb version (\d\S*)/.exec(v.stdout + v.stderr)?.[1];
  const help = await runTool(bin, ['compare', 'data', '--help']);
  if (!/Compare source and target data/.test(help.stdout + help.stderr)) {
    return {
      ok: false,
      ...(version ? { version } : {}),
      why: `pgcopydb ${version ?? '(unknown version)'} at ${bin} has no "compare data" (pgcopydb 0.13 and later; Debian 12 ships 0.10): pass --pgcopydb-compare PATH`,
    };
  }
  return { ok: true, ...(version ? { version } : {}) };
}

/** pgcopydb compare data between two databases: seconds, and its last lines (the verdict). Throws on a difference or failure. */
export async function pgcopydbCompare(bin: string, sourceUrl: string, targetUrl: string): Promise<{ seconds: number; summary: string }> {
  const dir = tempDir('pgcopydb-compare');
  const r = await runTool(bin, ['compare', 'data', '--source', sourceUrl, '--target', targetUrl, '--table-jobs', String(COMPARE_JOBS), '--dir', dir], {
    env: toolEnv({ TMPDIR: dir }),
  });
  fs.rmSync(dir, { recursive: true, force: true });
  const out = scrub(r.stdout + r.stderr, [sourceUrl, targetUrl]);
  if (r.code !== 0) {
    const errs = out
      .split('\n')
      .filter((l) => /ERROR|FATAL|!/.test(l))
      .slice(0, 6)
      .join('\n');
    throw new Error(`pgcopydb compare data exit ${r.code}:\n${errs || lastLines(out)}`);
  }
  return { seconds: r.seconds, summary: lastLines(out, 3) };
}
