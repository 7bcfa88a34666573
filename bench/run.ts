/**
 * `npm run bench`: walbridge and its peers side by side, in one run, on the same data.
 *
 *   npm run bench                          # everything, default scale (~430 MB database)
 *   npm run bench -- --quick               # a small smoke run (< 60 s)
 *   npm run bench -- --only copy,drain     # a subset: copy, drain, live, bigtxn, wal, wan
 *   npm run bench -- --scale 0.5 --profile # smaller data; CPU profiles of the daemon
 *
 * Other flags: --backlog N (drain transactions, 30000), --live-seconds S (30), --live-rate TPS (200), --clients C (4),
 * --big-rows N (1000000), --wal-table-mb MB (1800), --wan-rtt MS (30), --out PATH-PREFIX,
 * --set NAME=VALUE (a walbridge setting for its runs, repeatable: --set WALBRIDGE_COPY_JOBS=2).
 *
 * Source PostgreSQL 15 and target PostgreSQL 15, throwaway clusters on 127.0.0.1 (never the
 * system server). Results: a table on stdout, bench/results/latest.json and latest.md
 * (--quick writes bench/results/quick.tmp.json instead). Every cluster, slot, subscription,
 * namespace and temp dir is removed at the end and on Ctrl-C.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type pg from 'pg';
import { startCluster, type Cluster } from '../test/harness/cluster.js';
import { assertSameContent } from '../test/harness/compare.js';
import { ALL_TABLES, buildSource, bulkShape, countDiffs, createTargetDb, databaseBytes, rowCounts, type BulkRanges } from './dataset.js';
import { LagSampler, quantile, type LagStats } from './lag.js';
import {
  createNativePublication,
  dropNative,
  ensurePgcopydb,
  nativeCommands,
  nativeCopy,
  nativeDisable,
  NATIVE,
  nativeEnable,
  pgcopydb,
  pgcopydbCommand,
  pgDumpCommand,
  pgDumpPsql,
  waitNativeConfirmed,
} from './peers.js';
import { currentLsn, lsnDiff, runPgbench, settledRowChanges, waitForMarker, writeMarker } from './pgbench.js';
import { installCleanup, lastLines, onExit, runTool, tempDir, toolEnv } from './proc.js';
import { newestProfile, summariseProfile, type ProfileEntry } from './profile.js';
import { fmt, markdownTable, textTable, type Row } from './report.js';
import { measureRetainedWalDuringCopy, prepareRetainedWal, type RetainedWalResult } from './retained-wal.js';
import {
  ActivitySampler,
  connect,
  copyTimings,
  daemonTail,
  dropSlotWhenFree,
  launchWalbridge,
  logTime,
  metric,
  waitForApplied,
  waitForRecordedPhase,
  walbridgeEnv,
  type TableCopy,
  type Walbridge,
} from './walbridge.js';
import { CpuSampler, machineCpuSeconds } from './cpu.js';
import { startDelayProxy } from './delay-proxy.js';
import { listenAlsoOn, setupWan, urlVia } from './wan.js';

const SCENARIOS = ['copy', 'drain', 'live', 'bigtxn', 'wal', 'wan'] as const;
type Scenario = (typeof SCENARIOS)[number];

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    backlog: { type: 'string' },
    'live-seconds': { type: 'string' },
    'live-rate': { type: 'string' },
    clients: { type: 'string' },
    'big-rows': { type: 'string' },
    'wan-rtt': { type: 'string' },
    'wal-table-mb': { type: 'string' },
    out: { type: 'string' },
    set: { type: 'string', multiple: true },
  },
});

const quick = args.quick === true;
const opts = {
  scale: Number(args.scale ?? (quick ? 0.02 : 1)),
  backlog: Number(args.backlog ?? (quick ? 1000 : 30_000)),
  liveSeconds: Number(args['live-seconds'] ?? (quick ? 5 : 30)),
  /** The throttled live run's rate (tps): a busy app, well under what this machine reaches. */
  liveRate: Number(args['live-rate'] ?? 200),
  clients: Number(args.clients ?? 4),
  bigRows: Number(args['big-rows'] ?? (quick ? 50_000 : 1_000_000)),
  wanRtt: Number(args['wan-rtt'] ?? 30),
  walTableMB: Number(args['wal-table-mb'] ?? (quick ? 24 : 1800)),
  profile: args.profile === true,
  /** --set NAME=VALUE: walbridge settings for every walbridge run (tuning experiments). */
  walbridgeSettings: Object.fromEntries(
    (args.set ?? []).map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1) throw new Error(`--set ${kv}: write NAME=VALUE, e.g. --set WALBRIDGE_COPY_JOBS=2`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ) as Record<string, string>,
};
const only = new Set<Scenario>(
  args.only
    ? args.only.split(',').map((s) => {
        const x = s.trim() as Scenario;
        if (!SCENARIOS.includes(x)) throw new Error(`--only: unknown scenario "${s}" (one of ${SCENARIOS.join(', ')})`);
        return x;
      })
    : quick
      ? ['copy', 'drain', 'live', 'bigtxn', 'wal']
      : [...SCENARIOS],
);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outBase = args.out ?? path.join(ROOT, 'bench', 'results', quick ? 'quick.tmp' : 'latest');
const COPY_TIMEOUT = 30 * 60_000;

const t00 = Date.now();
const say = (s: string) => process.stdout.write(`[${((Date.now() - t00) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

interface PeerCopy {
  seconds?: number;
  /** CPU time the whole machine spent meanwhile (both servers, the tool, everything). */
  machineCpuSeconds?: number;
  error?: string;
  check?: string;
}

interface Results {
  startedAt: string;
  seconds?: number;
  machine: { cpus: number; node: string; source: string; target: string; pgcopydb?: string };
  options: typeof opts & { only: Scenario[]; quick: boolean };
  dataset?: { bytes: number; rows: number; tables: Record<string, number> };
  commands: Record<string, string>;
  copy?: {
    walbridge: PeerCopy & { backfillSeconds?: number; tables?: TableCopy[]; copiedBytes?: number; peakRssMb?: number; copyJobs: string };
    native: PeerCopy;
    pgdump: PeerCopy;
    pgcopydb: PeerCopy;
  };
  drain?: {
    backlog: { transactions: number; failed: number; changes: number; walBytes: number; pgbenchSeconds: number; pgbenchTps: number };
    walbridge: {
      seconds?: number;
      streamSeconds?: number;
      lsnSeconds?: number;
      changesPerSec?: number;
      txPerSec?: number;
      peakRssMb?: number;
      /** pg_stat_activity of walbridge's sessions during the drain: share of 100 ms samples per state / wait event. */
      activity?: Record<string, Array<[string, number]>>;
      /** CPU seconds during the drain: the daemon, its walsender on the source, its sessions on the target. */
      cpu?: Record<string, number>;
      error?: string;
    };
    native: { seconds?: number; confirmedSeconds?: number; changesPerSec?: number; txPerSec?: number; cpu?: Record<string, number>; check?: string; error?: string };
    /** pg_recvlogical reading the same backlog to /dev/null: the walsender's own pace. */
    decodeOnly?: { seconds?: number; changesPerSec?: number; error?: string };
  };
  live?: {
    seconds: number;
    clients: number;
    pgbenchTps: number;
    transactions: number;
    lag: LagStats;
    /** Lag p50 / max per second of the run (s), to see whether it grows, holds or recovers. */
    lagPerSecond: Array<[number, number]>;
    metricLagSeconds: { p50: number; p99: number; max: number };
    catchUpSeconds: number;
    peakRssMb: number;
    error?: string;
  };
  /** The same at a steady rate an app might write at (pgbench -R). */
  liveSteady?: Results['live'];
  /** A native subscription under the same full-rate pgbench run. */
  liveNative?: { pgbenchTps: number; lag: LagStats; catchUpSeconds: number; error?: string };
  bigtxn?: { rows: number; insertSeconds: number; applySeconds?: number; peakRssMb?: number; targetRows?: number; error?: string };
  verify?: { walbridge: string };
  wal?: Omit<RetainedWalResult, 'samples'> & { tableBytes: number; loadMBps: number; samples: number; error?: string };
  wan?: {
    skipped?: string;
    method?: string;
    rttMs?: number;
    copyMBps?: number;
    loopbackCopyMBps?: number;
    /** The copy through the delay proxy with no delay: the proxy's own cost, without the latency. */
    proxyCopyMBps?: number;
    /** Over the stream itself: from 'streaming changes from the slot' to the marker (as the copy rate is over the copy). */
    drainChangesPerSec?: number;
    loopbackDrainChangesPerSec?: number;
    /** From starting the daemon to streaming: connections, checks and catalog reads, each a round trip. */
    drainStartupSeconds?: number;
    loopbackDrainStartupSeconds?: number;
    peakRssMb?: number;
    error?: string;
  };
  rssMb: Record<string, number>;
  profiles?: Record<string, { totalMs: number; top: ProfileEntry[] }>;
  errors: string[];
}

const results: Results = {
  startedAt: new Date().toISOString(),
  machine: { cpus: os.cpus().length, node: process.version, source: '', target: '' },
  options: { ...opts, only: [...only], quick },
  commands: {},
  rssMb: {},
  errors: [],
};

// ---------------------------------------------------------------------------------------------
// walbridge steps shared by the scenarios
// ---------------------------------------------------------------------------------------------

interface Ctx {
  source: Cluster;
  target: Cluster;
  ranges: BulkRanges;
  profileDir: string | null;
}

function nodeArgsFor(ctx: Ctx, label: string): string[] | undefined {
  if (!ctx.profileDir) return undefined;
  const dir = path.join(ctx.profileDir, label);
  fs.mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', '--cpu-prof-dir', dir];
}

function collectProfile(ctx: Ctx, label: string): void {
  if (!ctx.profileDir) return;
  const file = newestProfile(path.join(ctx.profileDir, label));
  if (!file) return;
  const s = summariseProfile(file, 15);
  results.profiles ??= {};
  results.profiles[label] = { totalMs: s.totalMs, top: s.entries };
}

interface WbCopy {
  w: Walbridge;
  seconds: number;
  backfillSeconds: number | null;
  tables: TableCopy[];
  copiedBytes: number;
}

/** Start walbridge on an empty target and wait until it streams (copy + spool applied). */
async function walbridgeCopy(ctx: Ctx, env: Record<string, string>, targetDb: string, label: string, netns?: string): Promise<WbCopy> {
  const tgt = await connect(ctx.target, targetDb);
  try {
    const nodeArgs = nodeArgsFor(ctx, label);
    const w = await launchWalbridge(env, { ...(netns ? { netns } : {}), ...(nodeArgs ? { nodeArgs } : {}) });
    const at = await waitForRecordedPhase(w, tgt, 'streaming', COPY_TIMEOUT);
    const tables = copyTimings(w);
    const backfill = logTime(w, 'backfill finished; applying the changes spooled meanwhile');
    return { w, seconds: (at - w.startedAt) / 1000, backfillSeconds: backfill === null ? null : backfill / 1000, tables, copiedBytes: tables.reduce((a, t) => a + t.bytes, 0) };
  } finally {
    await tgt.end().catch(() => undefined);
  }
}

async function stopWalbridge(ctx: Ctx, w: Walbridge, label: string): Promise<void> {
  await w.stop();
  collectProfile(ctx, label);
}

interface Backlog {
  transactions: number;
  failed: number;
  changes: number;
  walBytes: number;
  pgbenchSeconds: number;
  pgbenchTps: number;
  marker: { id: number; lsn: string };
}

/** Write the backlog with pgbench while no consumer runs; ends with a marker transaction. */
async function writeBacklog(ctx: Ctx): Promise<Backlog> {
  const c0 = await settledRowChanges(ctx.source);
  const l0 = await currentLsn(ctx.source);
  const pb = await runPgbench(ctx.source, ctx.ranges, { transactions: opts.backlog, clients: opts.clients });
  results.commands.pgbench_backlog = pb.command;
  const c1 = await settledRowChanges(ctx.source);
  const marker = await writeMarker(ctx.source);
  return {
    transactions: pb.transactions,
    failed: pb.failed,
    changes: c1 - c0,
    walBytes: await lsnDiff(ctx.source, marker.lsn, l0),
    pgbenchSeconds: pb.seconds,
    pgbenchTps: pb.tps,
    marker,
  };
}

/** Start walbridge on a target that has the data, and time until the backlog's marker is applied. */
async function walbridgeDrain(
  ctx: Ctx,
  env: Record<string, string>,
  targetDb: string,
  backlog: Backlog,
  label: string,
  netns?: string,
): Promise<{ w: Walbridge; seconds: number; streamSeconds: number | null; lsnSeconds: number; activity: Record<string, Array<[string, number]>>; cpu: Record<string, number> }> {
  const nodeArgs = nodeArgsFor(ctx, label);
  const [sc, tc, scpu, tcpu] = await Promise.all([connect(ctx.source, 'postgres'), connect(ctx.target, 'postgres'), connect(ctx.source, 'postgres'), connect(ctx.target, 'postgres')]);
  const samplers = { source: new ActivitySampler(sc), target: new ActivitySampler(tc) };
  const w = await launchWalbridge(env, { ...(netns ? { netns } : {}), ...(nodeArgs ? { nodeArgs } : {}) });
  const cpu = new CpuSampler(
    {
      daemon: () => (w.daemon.child.pid === undefined ? [] : [w.daemon.child.pid]),
      walsender: () => backendPids(scpu, "backend_type = 'walsender' AND application_name LIKE 'walbridge%'"),
      target: () => backendPids(tcpu, "application_name LIKE 'walbridge%'"),
    },
    new Set(['daemon', 'walsender', 'target']),
  );
  const alive = () => {
    if (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null) throw new Error(`walbridge exited while draining:\n${daemonTail(w)}`);
  };
  let activity: Record<string, Array<[string, number]>> = {};
  let cpuSeconds: Record<string, number> = {};
  let applied: number;
  try {
    applied = await waitForMarker(ctx.target, targetDb, backlog.marker.id, COPY_TIMEOUT, alive);
  } finally {
    activity = { source: await samplers.source.stop(), target: await samplers.target.stop() };
    cpuSeconds = await cpu.stop();
    await Promise.all([sc, tc, scpu, tcpu].map((c) => c.end().catch(() => undefined)));
  }
  const tgt = await connect(ctx.target, targetDb);
  const lsnAt = await waitForApplied(w, tgt, backlog.marker.lsn, 60_000).finally(() => void tgt.end().catch(() => undefined));
  const streamStart = logTime(w, 'streaming changes from the slot');
  return {
    w,
    seconds: (applied - w.startedAt) / 1000,
    streamSeconds: streamStart === null ? null : (applied - w.startedAt - streamStart) / 1000,
    lsnSeconds: (lsnAt - w.startedAt) / 1000,
    activity,
    cpu: cpuSeconds,
  };
}

/** Pids of a server's backends matching a pg_stat_activity condition. */
async function backendPids(c: pg.Client, where: string): Promise<number[]> {
  const r = await c.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE ${where}`);
  return r.rows.map((x) => x.pid);
}

/**
 * The source's own limit: how fast its walsender decodes the backlog for a consumer that does
 * nothing with it (pg_recvlogical writing pgoutput to /dev/null), from a copy of the slot.
 */
async function decodeOnly(source: Cluster, slot: string, endLsn: string): Promise<number> {
  const args = ['-d', `host=${source.host} port=${source.port} dbname=app user=postgres replication=database`, '--slot', slot, '--start', '--endpos', endLsn,
    '-o', 'proto_version=1', '-o', 'publication_names=walbridge', '-f', '/dev/null', '--no-loop'];
  const t0 = Date.now();
  const r = await runTool('/usr/bin/pg_recvlogical', args, { env: toolEnv({ PGPASSWORD: source.password }) });
  if (r.code !== 0) throw new Error(`pg_recvlogical failed (exit ${r.code}): ${lastLines(r.stdout + r.stderr, 6)}`);
  return (Date.now() - t0) / 1000;
}

/** Remove walbridge's slot and publication from a source database (after the daemon stopped). */
async function teardownWalbridge(source: Cluster, database: string, slot = 'walbridge', publication = 'walbridge'): Promise<void> {
  const c = await connect(source, database);
  try {
    await dropSlotWhenFree(c, slot);
    await c.query(`DROP PUBLICATION IF EXISTS ${publication}`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

function countCheck(src: Record<string, number>, tgt: Record<string, number>): string {
  const d = countDiffs(src, tgt);
  return d.length === 0 ? `row counts equal (${Object.keys(src).length} tables)` : `ROW COUNTS DIFFER: ${d.join('; ')}`;
}

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  installCleanup();
  const shape = bulkShape(opts.scale);
  say(`walbridge benchmark: scenarios ${[...only].join(', ')}; scale ${opts.scale} (${shape.messages.toLocaleString('en-US')} messages…)`);
  const settings = { max_wal_size: '2GB', max_replication_slots: '16', max_wal_senders: '16' };
  const [source, target] = await Promise.all([
    startCluster({ major: 15, name: 'bench-source', settings }),
    startCluster({ major: 15, name: 'bench-target', settings }),
  ]);
  const version = async (c: Cluster) => (await c.query<{ v: string }>("SELECT current_setting('server_version') AS v"))[0]?.v ?? '?';
  results.machine.source = `PostgreSQL ${await version(source)}`;
  results.machine.target = `PostgreSQL ${await version(target)}`;

  say('building the source database (app schema + generated bulk)…');
  const tb = Date.now();
  const ranges = await buildSource(source, opts.scale);
  const srcCounts = await rowCounts(source, 'app');
  const bytes = await databaseBytes(source, 'app');
  results.dataset = { bytes, rows: Object.values(srcCounts).reduce((a, b) => a + b, 0), tables: srcCounts };
  say(`source ready in ${((Date.now() - tb) / 1000).toFixed(0)} s: ${fmt.mb(bytes)}, ${fmt.n(results.dataset.rows)} rows in ${ALL_TABLES.length} tables`);

  const ctx: Ctx = { source, target, ranges, profileDir: opts.profile ? tempDir('profiles') : null };
  /** Every table, row by row, source against walbridge's target. */
  const verifyWalbridge = async () => {
    say('verify: every table, row by row, source vs walbridge target …');
    try {
      await assertSameContent(source.url('app'), target.url('app'), ALL_TABLES);
      results.verify = { walbridge: `equal, row by row (${ALL_TABLES.length} tables)` };
    } catch (err) {
      results.verify = { walbridge: `DIFFERENT: ${(err as Error).message}` };
      results.errors.push(`verify: ${(err as Error).message}`);
    }
    say(`  ${results.verify.walbridge}`);
  };
  const wbEnv = walbridgeEnv(source.url('app'), target.url('app'), opts.walbridgeSettings);
  await createTargetDb(target, 'app');

  const needWb = only.has('copy') || only.has('drain') || only.has('live') || only.has('bigtxn');
  const needNative = only.has('copy') || only.has('drain');
  let nativeDb: string | null = null;
  let wbCopy: WbCopy | null = null;

  // 1. Initial copy -----------------------------------------------------------------------------
  if (only.has('copy')) {
    const copy: NonNullable<Results['copy']> = { walbridge: { copyJobs: wbEnv.WALBRIDGE_COPY_JOBS ?? 'default (4)' }, native: {}, pgdump: {}, pgcopydb: {} };
    results.copy = copy;
    results.commands.pg_dump = pgDumpCommand('<source-url>', '<target-url>');
    results.commands.pgcopydb = pgcopydbCommand('<source-url>', '<target-url>', '<tmpdir>');

    say('copy: pg_dump --data-only | psql …');
    await createTargetDb(target, 'peer_pgdump');
    try {
      const cpu0 = machineCpuSeconds();
      copy.pgdump.seconds = await pgDumpPsql(source.url('app'), target.url('peer_pgdump'));
      copy.pgdump.machineCpuSeconds = machineCpuSeconds() - cpu0;
      copy.pgdump.check = countCheck(srcCounts, await rowCounts(target, 'peer_pgdump'));
      say(`  pg_dump|psql ${fmt.s(copy.pgdump.seconds)}; ${copy.pgdump.check}`);
    } catch (err) {
      copy.pgdump.error = (err as Error).message;
      say(`  pg_dump|psql failed: ${copy.pgdump.error}`);
    }
    await target.query('DROP DATABASE peer_pgdump WITH (FORCE)', [], 'postgres');
    await target.query('CHECKPOINT', [], 'postgres');

    say('copy: pgcopydb copy table-data --table-jobs 2 …');
    const tool = await ensurePgcopydb(say);
    if (!tool.ok) {
      copy.pgcopydb.error = tool.why ?? 'unavailable';
      say(`  pgcopydb skipped: ${copy.pgcopydb.error}`);
    } else {
      if (tool.version) results.machine.pgcopydb = tool.version;
      await createTargetDb(target, 'peer_pgcopydb');
      try {
        const cpu0 = machineCpuSeconds();
        copy.pgcopydb.seconds = await pgcopydb(source.url('app'), target.url('peer_pgcopydb'));
        copy.pgcopydb.machineCpuSeconds = machineCpuSeconds() - cpu0;
        copy.pgcopydb.check = countCheck(srcCounts, await rowCounts(target, 'peer_pgcopydb'));
        say(`  pgcopydb ${fmt.s(copy.pgcopydb.seconds)}; ${copy.pgcopydb.check}`);
      } catch (err) {
        copy.pgcopydb.error = (err as Error).message;
        say(`  pgcopydb failed: ${copy.pgcopydb.error}`);
      }
      await target.query('DROP DATABASE peer_pgcopydb WITH (FORCE)', [], 'postgres');
      await target.query('CHECKPOINT', [], 'postgres');
    }

    say('copy: native subscription (copy_data = true) …');
    results.commands.native = `${nativeCommands.publication}; ${nativeCommands.subscription}`;
    nativeDb = 'peer_native';
    await createTargetDb(target, nativeDb);
    await createNativePublication(source);
    try {
      const cpu0 = machineCpuSeconds();
      copy.native.seconds = await nativeCopy(source, target, nativeDb, COPY_TIMEOUT);
      copy.native.machineCpuSeconds = machineCpuSeconds() - cpu0;
      copy.native.check = countCheck(srcCounts, await rowCounts(target, nativeDb));
      say(`  native ${fmt.s(copy.native.seconds)}; ${copy.native.check}`);
    } catch (err) {
      copy.native.error = (err as Error).message;
      say(`  native failed: ${copy.native.error}`);
    }
    if (!only.has('drain') || copy.native.error) {
      await dropNative(source, target, nativeDb);
      await target.query(`DROP DATABASE ${nativeDb} WITH (FORCE)`, [], 'postgres');
      nativeDb = null;
    } else {
      // Idle while walbridge copies: no apply worker, so it cannot disturb the measurement.
      await nativeDisable(source, target, nativeDb);
    }
    await target.query('CHECKPOINT', [], 'postgres');

    say('copy: walbridge …');
    results.commands.walbridge = 'node dist/daemon.js  (SOURCE_DATABASE_URL, TARGET_DATABASE_URL, WALBRIDGE_SCHEMAS=public,auth; other settings default)';
    try {
      const cpu0 = machineCpuSeconds();
      wbCopy = await walbridgeCopy(ctx, wbEnv, 'app', 'copy');
      copy.walbridge.machineCpuSeconds = machineCpuSeconds() - cpu0;
      copy.walbridge.seconds = wbCopy.seconds;
      copy.walbridge.backfillSeconds = wbCopy.backfillSeconds ?? undefined;
      copy.walbridge.tables = wbCopy.tables;
      copy.walbridge.copiedBytes = wbCopy.copiedBytes;
      copy.walbridge.check = countCheck(srcCounts, await rowCounts(target, 'app'));
      say(`  walbridge ${fmt.s(wbCopy.seconds)} to streaming (backfill ${fmt.s(wbCopy.backfillSeconds)}); ${copy.walbridge.check}`);
      await stopWalbridge(ctx, wbCopy.w, 'copy');
      copy.walbridge.peakRssMb = wbCopy.w.rss.peakMb();
      results.rssMb.copy = copy.walbridge.peakRssMb;
    } catch (err) {
      copy.walbridge.error = (err as Error).message;
      say(`  walbridge failed: ${copy.walbridge.error}`);
      results.errors.push(`copy: ${copy.walbridge.error}`);
      if (wbCopy) await wbCopy.w.stop();
      wbCopy = null;
    }
  }

  // walbridge and native must have the data for the scenarios after the copy.
  if (needWb && !wbCopy && !results.copy?.walbridge.error) {
    say('setup: walbridge initial copy (not measured) …');
    wbCopy = await walbridgeCopy(ctx, wbEnv, 'app', 'setup');
    await wbCopy.w.stop();
  }
  if (only.has('drain') && !nativeDb && !results.copy?.native.error) {
    say('setup: native subscription initial copy (not measured) …');
    nativeDb = 'peer_native';
    await createTargetDb(target, nativeDb);
    await createNativePublication(source);
    await nativeCopy(source, target, nativeDb, COPY_TIMEOUT);
    await nativeDisable(source, target, nativeDb);
  }
  void needNative;

  // 2. Backlog drain ----------------------------------------------------------------------------
  if (only.has('drain') && wbCopy) {
    say(`drain: writing a backlog of ${fmt.n(opts.backlog)} app transactions with pgbench (-c ${opts.clients}), no consumer running …`);
    const backlog = await writeBacklog(ctx);
    // Its twin for the decode-only reference below, at the same position before the backlog.
    await source.query(`SELECT pg_copy_logical_replication_slot('walbridge', 'bench_decode')`, [], 'app');
    const { marker: _m, ...b } = backlog;
    const drain: NonNullable<Results['drain']> = { backlog: b, walbridge: {}, native: {} };
    results.drain = drain;
    say(`  backlog: ${fmt.n(b.transactions)} transactions, ${fmt.n(b.changes)} row changes, ${fmt.mb(b.walBytes)} of WAL (pgbench ${b.pgbenchTps.toFixed(0)} tps)`);

    say('drain: walbridge …');
    try {
      const d = await walbridgeDrain(ctx, wbEnv, 'app', backlog, 'drain');
      await stopWalbridge(ctx, d.w, 'drain');
      drain.walbridge = {
        seconds: d.seconds,
        ...(d.streamSeconds !== null ? { streamSeconds: d.streamSeconds } : {}),
        lsnSeconds: d.lsnSeconds,
        changesPerSec: b.changes / d.seconds,
        txPerSec: b.transactions / d.seconds,
        peakRssMb: d.w.rss.peakMb(),
        activity: d.activity,
        cpu: d.cpu,
      };
      results.rssMb.drain = d.w.rss.peakMb();
      say(`  walbridge ${fmt.s(d.seconds)} (${fmt.n(drain.walbridge.changesPerSec)} changes/s, ${fmt.n(drain.walbridge.txPerSec)} tx/s; applied_lsn passed at ${fmt.s(d.lsnSeconds)})`);
    } catch (err) {
      drain.walbridge.error = (err as Error).message;
      results.errors.push(`drain: ${drain.walbridge.error}`);
      say(`  walbridge failed: ${drain.walbridge.error}`);
    }

    if (nativeDb) {
      say('drain: native subscription (ENABLE) …');
      const [scpu, tcpu] = await Promise.all([connect(source, 'postgres'), connect(target, 'postgres')]);
      try {
        const t0 = Date.now();
        await nativeEnable(target, nativeDb);
        const cpu = new CpuSampler(
          {
            walsender: () => backendPids(scpu, `backend_type = 'walsender' AND application_name = '${NATIVE}'`),
            apply: () => backendPids(tcpu, "backend_type LIKE 'logical replication%'"),
          },
          new Set(['walsender', 'apply']),
        );
        const applied = await waitForMarker(target, nativeDb, backlog.marker.id, COPY_TIMEOUT);
        const cpuSeconds = await cpu.stop();
        const confirmed = await waitNativeConfirmed(source, target, nativeDb, backlog.marker.lsn, 120_000);
        const seconds = (applied - t0) / 1000;
        drain.native = {
          seconds,
          confirmedSeconds: (confirmed - t0) / 1000,
          changesPerSec: b.changes / seconds,
          txPerSec: b.transactions / seconds,
          cpu: cpuSeconds,
          check: countCheck(await rowCounts(source, 'app'), await rowCounts(target, nativeDb)),
        };
        say(`  native ${fmt.s(seconds)} (${fmt.n(drain.native.changesPerSec)} changes/s, ${fmt.n(drain.native.txPerSec)} tx/s; slot confirmed at ${fmt.s(drain.native.confirmedSeconds)}); ${drain.native.check}`);
      } catch (err) {
        drain.native.error = (err as Error).message;
        say(`  native failed: ${drain.native.error}`);
      } finally {
        await Promise.all([scpu, tcpu].map((c) => c.end().catch(() => undefined)));
      }
    }

    say('drain: the walsender alone (pg_recvlogical to /dev/null, same backlog, a copy of the slot) …');
    try {
      const seconds = await decodeOnly(source, 'bench_decode', backlog.marker.lsn);
      drain.decodeOnly = { seconds, changesPerSec: b.changes / seconds };
      say(`  decode only ${fmt.s(seconds)} (${fmt.n(drain.decodeOnly.changesPerSec)} changes/s)`);
    } catch (err) {
      drain.decodeOnly = { error: (err as Error).message };
      say(`  decode only failed: ${drain.decodeOnly.error}`);
    } finally {
      await source.query(`SELECT pg_drop_replication_slot('bench_decode')`, [], 'app').catch(() => undefined);
    }
  }
  // A native subscription that drained the backlog is kept (disabled) for the live comparison.
  const liveNativeDb = only.has('live') && nativeDb && results.drain && !results.drain.native.error ? nativeDb : null;
  if (liveNativeDb) await nativeDisable(source, target, liveNativeDb);
  else if (nativeDb) {
    await dropNative(source, target, nativeDb);
    await target.query(`DROP DATABASE ${nativeDb} WITH (FORCE)`, [], 'postgres');
    nativeDb = null;
  }

  // 3. Live lag and 4. one big transaction (same daemon) -------------------------------------------
  if ((only.has('live') || only.has('bigtxn')) && wbCopy) {
    const tgtClient = await connect(target, 'app');
    let w: Walbridge | null = null;
    try {
      const nodeArgs = nodeArgsFor(ctx, 'live');
      w = await launchWalbridge(wbEnv, nodeArgs ? { nodeArgs } : {});
      await waitForRecordedPhase(w, tgtClient, 'streaming', 120_000);
      const m0 = await writeMarker(source);
      await waitForMarker(target, 'app', m0.id, 120_000);

      /** pgbench for liveSeconds, at full rate or throttled to `rate` tps, while walbridge streams. */
      const daemon = w;
      const liveRun = async (rate: number | null): Promise<NonNullable<Results['live']>> => {
        say(`live: pgbench at ${rate === null ? 'full rate' : `${rate} tps`} (-c ${opts.clients}) for ${opts.liveSeconds} s while walbridge streams …`);
        const srcClient = await connect(source, 'app');
        const lag = new LagSampler(srcClient, tgtClient, 'SELECT applied_lsn::text AS lsn FROM walbridge.pipeline');
        const metricLags: number[] = [];
        let sampling = true;
        const metricLoop = (async () => {
          while (sampling) {
            const v = await metric(daemon, 'walbridge_replication_lag_seconds');
            if (v !== null) metricLags.push(v);
            await new Promise((r) => setTimeout(r, 500));
          }
        })();
        const from = Date.now();
        const pb = await runPgbench(source, ranges, { seconds: opts.liveSeconds, clients: opts.clients, ...(rate === null ? {} : { rate }) });
        results.commands[rate === null ? 'pgbench_live' : 'pgbench_live_steady'] = pb.command;
        const to = Date.now();
        const mk = await writeMarker(source);
        const caught = await waitForMarker(target, 'app', mk.id, 300_000);
        await new Promise((r) => setTimeout(r, 300));
        sampling = false;
        await metricLoop;
        await lag.stop();
        await srcClient.end().catch(() => undefined);
        const stats = lag.stats(from + 1000, to);
        metricLags.sort((a, b) => a - b);
        const live: NonNullable<Results['live']> = {
          seconds: pb.seconds,
          clients: opts.clients,
          pgbenchTps: pb.tps,
          transactions: pb.transactions,
          lag: stats,
          lagPerSecond: Array.from({ length: Math.ceil((to - from) / 1000) }, (_, i) => {
            const st = lag.stats(from + i * 1000, from + (i + 1) * 1000);
            return [Number(st.p50.toFixed(3)), Number(st.max.toFixed(3))] as [number, number];
          }),
          metricLagSeconds: { p50: quantile(metricLags, 0.5), p99: quantile(metricLags, 0.99), max: metricLags[metricLags.length - 1] ?? Number.NaN },
          catchUpSeconds: (caught - mk.at) / 1000,
          peakRssMb: daemon.rss.peakMb(from, caught),
        };
        say(
          `  pgbench ${pb.tps.toFixed(0)} tps; lag p50 ${fmt.s(stats.p50, 2)}, p99 ${fmt.s(stats.p99, 2)}, max ${fmt.s(stats.max, 2)} ` +
            `(${stats.samples} samples, ${stats.unresolved} unresolved); caught up ${fmt.s(live.catchUpSeconds, 2)} after the load stopped`,
        );
        return live;
      };
      if (only.has('live')) {
        results.live = await liveRun(null);
        results.liveSteady = await liveRun(opts.liveRate);
        results.rssMb.live = Math.max(results.live.peakRssMb, results.liveSteady.peakRssMb);
      }

      if (only.has('bigtxn')) {
        say(`bigtxn: one transaction of ${fmt.n(opts.bigRows)} rows (INSERT … SELECT generate_series) while walbridge streams …`);
        const big: NonNullable<Results['bigtxn']> = { rows: opts.bigRows, insertSeconds: 0 };
        results.bigtxn = big;
        try {
          const t0 = Date.now();
          await source.query(
            `INSERT INTO public.bench_big (id, n, label, created_at)
             SELECT g, g % 1000, 'row ' || g || ' ' || md5(g::text), timestamptz '2026-01-01' + g * interval '1 ms'
               FROM generate_series(1, ${opts.bigRows}) g`,
          );
          const committed = Date.now();
          big.insertSeconds = (committed - t0) / 1000;
          const mk = await writeMarker(source);
          const applied = await waitForMarker(target, 'app', mk.id, 30 * 60_000, () => {
            if (w && (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null)) throw new Error(`walbridge exited:\n${daemonTail(w)}`);
          });
          big.applySeconds = (applied - committed) / 1000;
          big.peakRssMb = w.rss.peakMb(t0, applied + 200);
          const [r] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.bench_big');
          big.targetRows = Number(r?.n ?? 0);
          results.rssMb.bigtxn = big.peakRssMb;
          say(`  insert ${fmt.s(big.insertSeconds)} on the source; applied ${fmt.s(big.applySeconds)} after its commit; peak RSS ${big.peakRssMb.toFixed(0)} MB; ${fmt.n(big.targetRows)} rows on the target`);
        } catch (err) {
          big.error = (err as Error).message;
          results.errors.push(`bigtxn: ${big.error}`);
          say(`  failed: ${big.error}`);
        }
      }

      await verifyWalbridge();
    } catch (err) {
      results.errors.push(`live/bigtxn: ${(err as Error).message}`);
      say(`  failed: ${(err as Error).message}`);
      if (results.live === undefined && only.has('live')) results.errors.push('live: not measured');
    } finally {
      if (w) {
        await stopWalbridge(ctx, w, 'live');
        results.rssMb.liveDaemonHwm = w.rss.hwmKb / 1024;
      }
      await tgtClient.end().catch(() => undefined);
    }
  } else if (wbCopy && !only.has('live') && !only.has('bigtxn')) {
    await verifyWalbridge();
  }

  // 3b. Live lag of a native subscription, same pgbench run (walbridge stopped meanwhile) --------
  if (liveNativeDb) {
    say(`live: native subscription, pgbench at full rate (-c ${opts.clients}) for ${opts.liveSeconds} s …`);
    const [srcClient, tgtClient] = await Promise.all([connect(source, 'app'), connect(target, liveNativeDb)]);
    try {
      await nativeEnable(target, liveNativeDb);
      const m0 = await writeMarker(source);
      await waitForMarker(target, liveNativeDb, m0.id, 600_000);
      // Native's applied position: its origin's remote_lsn, the end of the last commit applied.
      const lag = new LagSampler(srcClient, tgtClient, 'SELECT max(remote_lsn)::text AS lsn FROM pg_replication_origin_status');
      const from = Date.now();
      const pb = await runPgbench(source, ranges, { seconds: opts.liveSeconds, clients: opts.clients });
      const to = Date.now();
      const mk = await writeMarker(source);
      const caught = await waitForMarker(target, liveNativeDb, mk.id, 300_000);
      await lag.stop();
      results.liveNative = { pgbenchTps: pb.tps, lag: lag.stats(from + 1000, to), catchUpSeconds: (caught - mk.at) / 1000 };
      const st = results.liveNative.lag;
      say(`  pgbench ${pb.tps.toFixed(0)} tps; native lag p50 ${fmt.s(st.p50, 2)}, p99 ${fmt.s(st.p99, 2)}, max ${fmt.s(st.max, 2)}`);
    } catch (err) {
      results.liveNative = { pgbenchTps: 0, lag: { samples: 0, unresolved: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN }, catchUpSeconds: NaN, error: (err as Error).message };
      say(`  native live failed: ${(err as Error).message}`);
    } finally {
      await Promise.all([srcClient.end().catch(() => undefined), tgtClient.end().catch(() => undefined)]);
      await dropNative(source, target, liveNativeDb);
      await target.query(`DROP DATABASE ${liveNativeDb} WITH (FORCE)`, [], 'postgres');
    }
  }
  if (wbCopy) await teardownWalbridge(source, 'app');

  // 7. Retained WAL during the copy -----------------------------------------------------------------
  if (only.has('wal')) {
    // A copy of well over 20 s: walbridge copies one plain table at roughly 50-60 MB/s here.
    const tableMB = opts.walTableMB;
    const loadMBps = quick ? 3 : 10;
    say(`wal: retained WAL while walbridge copies a ${tableMB} MB table under a steady ${loadMBps} MB/s WAL load …`);
    try {
      const tableBytes = await prepareRetainedWal(source, target, 'walcopy', tableMB);
      await source.query('CHECKPOINT', [], 'postgres');
      const r = await measureRetainedWalDuringCopy({ source, target, database: 'walcopy', loadMBps, ...(ctx.profileDir ? { nodeArgs: nodeArgsFor(ctx, 'wal') ?? [] } : {}) });
      const { samples, ...rest } = r;
      results.wal = { ...rest, tableBytes, loadMBps, samples: samples.length };
      results.rssMb.wal = r.peakRssMb;
      say(
        `  copy ${fmt.s(r.copySeconds)} (${r.tables.map((t) => `${t.table} ${fmt.s(t.seconds)}`).join(', ')}); the load wrote ${fmt.mb(r.loadWalBytes)} of WAL meanwhile; ` +
          `slot retained at most ${fmt.mb(r.maxRetainedBytes)} during the copy, ${fmt.mb(r.maxRetainedUntilStreamingBytes)} until streaming; ` +
          `spool applied ${r.catchUpSeconds === null ? 'NOT within 5 min' : `${fmt.s(r.catchUpSeconds)}`} after the copy`,
      );
    } catch (err) {
      results.wal = { error: (err as Error).message } as NonNullable<Results['wal']>;
      results.errors.push(`wal: ${(err as Error).message}`);
      say(`  failed: ${(err as Error).message}`);
    }
    for (const c of [source, target]) await c.query('DROP DATABASE IF EXISTS walcopy WITH (FORCE)', [], 'postgres').catch(() => undefined);
  }

  // 6. WAN ---------------------------------------------------------------------------------------
  if (only.has('wan')) {
    say(`wan: +${opts.wanRtt} ms round trip between walbridge and the source …`);
    const res: NonNullable<Results['wan']> = { rttMs: opts.wanRtt };
    results.wan = res;
    const exclude = { WALBRIDGE_EXCLUDE_TABLES: 'public.bench_big' };
    let teardown: () => Promise<void> | void = () => undefined;
    try {
      // Prefer a network namespace with tc netem; without netem (or netns), a userspace delay proxy.
      let env: Record<string, string>;
      let netns: string | undefined;
      const viaProxy = (port: number) => source.url('app').replace(`@127.0.0.1:${source.port}/`, `@127.0.0.1:${port}/`);
      let proxied = false;
      const wan = setupWan(opts.wanRtt);
      if (!('skip' in wan)) {
        await listenAlsoOn(source, wan.sourceHost);
        await listenAlsoOn(target, wan.targetHost);
        env = walbridgeEnv(urlVia(source, 'app', wan.sourceHost), urlVia(target, 'wan', wan.targetHost), { ...opts.walbridgeSettings, ...exclude });
        netns = wan.netns;
        teardown = () => wan.teardown();
        res.method = `walbridge in a network namespace, tc netem delay ${opts.wanRtt / 2} ms on both ends of the veth to the source`;
      } else {
        const proxy = await startDelayProxy(source.port, opts.wanRtt / 2);
        teardown = () => proxy.close();
        env = walbridgeEnv(viaProxy(proxy.port), target.url('wan'), { ...opts.walbridgeSettings, ...exclude });
        proxied = true;
        res.method = `userspace TCP proxy delaying each direction by ${opts.wanRtt / 2} ms (netns/netem not usable here: ${wan.skip})`;
      }
      say(`  ${res.method}`);
      // Reference on loopback, unless this run measured it already on the same data.
      const loopCopy = results.copy?.walbridge;
      const loopDrain = results.drain?.walbridge;
      const rate = (c: WbCopy) => c.copiedBytes / 1048576 / (c.backfillSeconds ?? c.seconds);
      const streamRate = (changes: number, d: { seconds?: number; streamSeconds?: number | null }) => changes / (d.streamSeconds ?? d.seconds ?? 1);
      const startup = (d: { seconds?: number; streamSeconds?: number | null }) =>
        d.seconds !== undefined && typeof d.streamSeconds === 'number' ? d.seconds - d.streamSeconds : undefined;
      if (loopCopy?.copiedBytes && (loopCopy.backfillSeconds ?? loopCopy.seconds)) {
        res.loopbackCopyMBps = loopCopy.copiedBytes / 1048576 / (loopCopy.backfillSeconds ?? loopCopy.seconds ?? 1);
      }
      if (!res.loopbackCopyMBps || !loopDrain?.changesPerSec) {
        say('  loopback reference (copy + drain) …');
        await createTargetDb(target, 'wan_ref');
        const refEnv = walbridgeEnv(source.url('app'), target.url('wan_ref'), { ...opts.walbridgeSettings, ...exclude });
        const c = await walbridgeCopy(ctx, refEnv, 'wan_ref', 'wan-ref');
        await c.w.stop();
        res.loopbackCopyMBps ??= rate(c);
        if (!loopDrain?.changesPerSec) {
          const backlog = await writeBacklog(ctx);
          const d = await walbridgeDrain(ctx, refEnv, 'wan_ref', backlog, 'wan-ref-drain');
          await d.w.stop();
          res.loopbackDrainChangesPerSec = streamRate(backlog.changes, d);
          res.loopbackDrainStartupSeconds = startup(d);
        }
        await teardownWalbridge(source, 'app');
        await target.query('DROP DATABASE wan_ref WITH (FORCE)', [], 'postgres');
      }
      if (proxied) {
        // Every byte through the proxy costs this process CPU, which could slow a copy that keeps
        // the machine's cores busy (tc netem would cost nothing): the same proxy with no delay
        // tells that cost from the latency's.
        say('  the same copy through the proxy with no delay …');
        const zero = await startDelayProxy(source.port, 0);
        try {
          await createTargetDb(target, 'wan_zero');
          const zc = await walbridgeCopy(ctx, walbridgeEnv(viaProxy(zero.port), target.url('wan_zero'), { ...opts.walbridgeSettings, ...exclude }), 'wan_zero', 'wan-zero');
          await zc.w.stop();
          res.proxyCopyMBps = rate(zc);
          await teardownWalbridge(source, 'app');
          await target.query('DROP DATABASE wan_zero WITH (FORCE)', [], 'postgres');
        } finally {
          await zero.close();
        }
      }
      if (loopDrain?.changesPerSec && results.drain) {
        res.loopbackDrainChangesPerSec = streamRate(results.drain.backlog.changes, loopDrain);
        res.loopbackDrainStartupSeconds = startup(loopDrain);
      }
      await createTargetDb(target, 'wan');
      const c = await walbridgeCopy(ctx, env, 'wan', 'wan-copy', netns);
      await c.w.stop();
      res.copyMBps = rate(c);
      say(`  copy: ${res.copyMBps.toFixed(1)} MB/s with the added latency vs ${(res.loopbackCopyMBps ?? 0).toFixed(1)} MB/s on loopback`);
      const backlog = await writeBacklog(ctx);
      const d = await walbridgeDrain(ctx, env, 'wan', backlog, 'wan-drain', netns);
      await d.w.stop();
      res.drainChangesPerSec = streamRate(backlog.changes, d);
      res.drainStartupSeconds = startup(d);
      res.peakRssMb = Math.max(c.w.rss.peakMb(), d.w.rss.peakMb());
      results.rssMb.wan = res.peakRssMb;
      say(`  drain: ${fmt.n(res.drainChangesPerSec)} changes/s with the added latency vs ${fmt.n(res.loopbackDrainChangesPerSec)} on loopback`);
      await teardownWalbridge(source, 'app');
    } catch (err) {
      res.error = (err as Error).message;
      results.errors.push(`wan: ${res.error}`);
      say(`  failed: ${res.error}`);
    } finally {
      await teardown();
    }
  }

  await Promise.all([source.destroy(), target.destroy()]);
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

function ratio(a: number | undefined, b: number | undefined): string {
  return a && b ? fmt.x(a / b) : '';
}

function peerCell(p: PeerCopy | undefined): string {
  if (!p) return '';
  if (p.error) return `failed: ${p.error.split('\n')[0]?.slice(0, 60)}`;
  return fmt.s(p.seconds);
}

function buildRows(): Row[] {
  const rows: Row[] = [];
  const r = results;
  if (r.copy) {
    const wb = r.copy.walbridge;
    rows.push({
      scenario: `initial copy (s, ${fmt.mb(r.dataset?.bytes)})`,
      walbridge: peerCell(wb),
      native: peerCell(r.copy.native),
      pgdump: peerCell(r.copy.pgdump),
      pgcopydb: peerCell(r.copy.pgcopydb),
      ratio: ratio(r.copy.native.seconds, wb.seconds),
    });
    if (wb.backfillSeconds !== undefined) rows.push({ scenario: '  walbridge: of which backfill (s)', walbridge: fmt.s(wb.backfillSeconds) });
    const cpu = (p: PeerCopy | undefined) => (p?.machineCpuSeconds === undefined ? '' : fmt.s(p.machineCpuSeconds));
    if (wb.machineCpuSeconds !== undefined) {
      rows.push({
        scenario: '  copy: CPU seconds of the whole machine',
        walbridge: cpu(wb),
        native: cpu(r.copy.native),
        pgdump: cpu(r.copy.pgdump),
        pgcopydb: cpu(r.copy.pgcopydb),
        ratio: ratio(r.copy.native.machineCpuSeconds, wb.machineCpuSeconds),
      });
    }
  }
  if (r.drain) {
    const d = r.drain;
    rows.push({
      scenario: `backlog drain (changes/s; ${fmt.n(d.backlog.changes)} changes)`,
      walbridge: d.walbridge.error ? 'failed' : fmt.n(d.walbridge.changesPerSec),
      native: d.native.error ? 'failed' : fmt.n(d.native.changesPerSec),
      ratio: ratio(d.walbridge.changesPerSec, d.native.changesPerSec),
    });
    rows.push({
      scenario: `backlog drain (tx/s; ${fmt.n(d.backlog.transactions)} tx)`,
      walbridge: fmt.n(d.walbridge.txPerSec),
      native: fmt.n(d.native.txPerSec),
      ratio: ratio(d.walbridge.txPerSec, d.native.txPerSec),
    });
    rows.push({ scenario: 'backlog drain (s)', walbridge: fmt.s(d.walbridge.seconds), native: fmt.s(d.native.seconds), ratio: ratio(d.native.seconds, d.walbridge.seconds) });
    if (d.walbridge.cpu || d.native.cpu) {
      const total = (c: Record<string, number> | undefined) => (c ? Object.values(c).reduce((a, x) => a + x, 0) : undefined);
      const cell = (c: Record<string, number> | undefined) => (c ? `${fmt.s(total(c))} (${Object.entries(c).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})` : '');
      rows.push({ scenario: '  drain: CPU seconds, every process of each', walbridge: cell(d.walbridge.cpu), native: cell(d.native.cpu), ratio: ratio(total(d.native.cpu), total(d.walbridge.cpu)) });
    }
    if (d.decodeOnly) {
      rows.push({
        scenario: "  the source's walsender alone (pg_recvlogical to /dev/null; changes/s)",
        walbridge: d.decodeOnly.error ? 'failed' : `${fmt.n(d.decodeOnly.changesPerSec)}${d.native.changesPerSec && d.decodeOnly.changesPerSec ? ` = ${fmt.x(d.decodeOnly.changesPerSec / d.native.changesPerSec)} native` : ''}`,
      });
    }
  }
  for (const [live, how] of [[r.live, 'full rate'], [r.liveSteady, 'throttled']] as const) {
    if (live) {
      const native = how === 'full rate' ? r.liveNative : undefined;
      rows.push({
        scenario: `live lag p50 / p99 (s), pgbench ${how}: ${live.pgbenchTps.toFixed(0)} tps${native && !native.error ? ` (native run: ${native.pgbenchTps.toFixed(0)} tps)` : ''}`,
        walbridge: `${fmt.s(live.lag.p50, 2)} / ${fmt.s(live.lag.p99, 2)}`,
        native: native ? (native.error ? 'failed' : `${fmt.s(native.lag.p50, 2)} / ${fmt.s(native.lag.p99, 2)}`) : '',
      });
    }
  }
  if (r.bigtxn) {
    rows.push({
      scenario: `${fmt.n(r.bigtxn.rows)}-row txn: apply s / peak RSS`,
      walbridge: r.bigtxn.error ? 'failed' : `${fmt.s(r.bigtxn.applySeconds)} / ${(r.bigtxn.peakRssMb ?? 0).toFixed(0)} MB`,
    });
  }
  const rss = Object.entries(r.rssMb).filter(([k]) => k !== 'liveDaemonHwm');
  if (rss.length > 0) rows.push({ scenario: 'peak RSS (MB) per scenario', walbridge: rss.map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ') });
  if (r.wal && !r.wal.error) {
    rows.push({
      scenario: 'retained WAL during copy (max MB)',
      walbridge: `${fmt.mb(r.wal.maxRetainedBytes)} (load wrote ${fmt.mb(r.wal.loadWalBytes)} in ${fmt.s(r.wal.copySeconds, 0)})`,
    });
    rows.push({
      scenario: '  then spool applied in (s) / max retained until streaming',
      walbridge: `${r.wal.catchUpSeconds === null ? 'not within 5 min' : fmt.s(r.wal.catchUpSeconds)} / ${fmt.mb(r.wal.maxRetainedUntilStreamingBytes)}`,
    });
  } else if (r.wal?.error) rows.push({ scenario: 'retained WAL during copy (max MB)', walbridge: 'failed' });
  if (r.wan) {
    if (r.wan.skipped) rows.push({ scenario: 'WAN', walbridge: `skipped: ${r.wan.skipped}` });
    else if (r.wan.error) rows.push({ scenario: 'WAN', walbridge: 'failed' });
    else {
      rows.push({
        scenario: `WAN +${r.wan.rttMs} ms: copy MB/s (vs loopback)`,
        walbridge: `${(r.wan.copyMBps ?? 0).toFixed(1)} (${((100 * (r.wan.copyMBps ?? 0)) / (r.wan.loopbackCopyMBps ?? 1)).toFixed(0)}%)`,
      });
      if (r.wan.proxyCopyMBps) {
        rows.push({
          scenario: `WAN +${r.wan.rttMs} ms: copy MB/s vs the same proxy with no delay`,
          walbridge: `${(r.wan.copyMBps ?? 0).toFixed(1)} vs ${r.wan.proxyCopyMBps.toFixed(1)} (${((100 * (r.wan.copyMBps ?? 0)) / r.wan.proxyCopyMBps).toFixed(0)}%)`,
        });
      }
      rows.push({
        scenario: `WAN +${r.wan.rttMs} ms: drain changes/s (vs loopback)`,
        walbridge: `${fmt.n(r.wan.drainChangesPerSec)}${r.wan.loopbackDrainChangesPerSec ? ` (${((100 * (r.wan.drainChangesPerSec ?? 0)) / r.wan.loopbackDrainChangesPerSec).toFixed(0)}%)` : ''}`,
      });
      if (r.wan.drainStartupSeconds !== undefined) {
        rows.push({
          scenario: `WAN +${r.wan.rttMs} ms: daemon start to streaming (s; vs loopback)`,
          walbridge: `${fmt.s(r.wan.drainStartupSeconds)}${r.wan.loopbackDrainStartupSeconds !== undefined ? ` (${fmt.s(r.wan.loopbackDrainStartupSeconds)})` : ''}`,
        });
      }
    }
  }
  return rows;
}

const MEANINGS = [
  'What the figures mean (same machine, same data, one run; compare ratios, not absolute times):',
  '- initial copy: seconds from start until the target holds every row. walbridge: from starting the daemon until its recorded phase is',
  "  'streaming' (copy + spool applied); native: CREATE SUBSCRIPTION until every table's srsubstate is 'r'; pg_dump|psql and",
  '  pgcopydb: the command\'s wall time. Each into a fresh empty database with the tables and indexes pre-created.',
  '- backlog drain: a backlog written by pgbench (bench/app.pgbench) with no consumer running, then the time from starting the',
  '  consumer (walbridge daemon / ALTER SUBSCRIPTION ENABLE) until a marker transaction written after the backlog is on the',
  '  target. changes/s = row changes (n_tup_ins+upd+del on the source) / that time.',
  '- live lag: pgbench at full rate, then throttled (-R), while walbridge streams; the source WAL position is sampled every 100 ms and each sample\'s',
  "  lag is the time until walbridge's recorded applied_lsn on the target passed it; native: its origin's remote_lsn (last commit applied),",
  '  in a run of its own with the same pgbench settings (walbridge stopped meanwhile).',
  '- copy CPU seconds: the busy time of every core of the machine (/proc/stat) while each copy ran: both servers, the tool, all.',
  '- drain CPU seconds: user + system time of every process of each consumer during its drain (walbridge: the daemon, its',
  "  walsender, its target sessions; native: its walsender and apply worker), from /proc. The walsender alone: pg_recvlogical",
  '  reading the same backlog from a copy of the slot to /dev/null, the pace of decoding itself, for any consumer.',
  '- big txn: one INSERT … SELECT generate_series of N rows; seconds from its commit on the source until applied on the target.',
  '- peak RSS: highest VmRSS of the walbridge process, sampled every 200 ms, per scenario.',
  "- retained WAL: pg_current_wal_lsn() - restart_lsn of walbridge's slot, sampled every 500 ms while it copies a big table under",
  '  a steady write load; next to it, the WAL the source wrote meanwhile.',
  '- WAN: the same copy and drain with latency added between walbridge and the source. Rates over the work itself, as on',
  '  loopback: copy MB/s over the backfill, drain changes/s from \'streaming changes from the slot\' to the marker; the time',
  '  from starting the daemon to streaming (connections, checks, catalog reads: round trips) is shown on its own line.',
  '- walbridge vs native: how many times faster walbridge is (> 1x: walbridge ahead).',
];

function render(): { text: string; md: string } {
  const rows = buildRows();
  const r = results;
  const head = `walbridge benchmark, ${r.startedAt} — ${r.machine.cpus} cores, node ${r.machine.node}, source ${r.machine.source}, target ${r.machine.target}` +
    (r.machine.pgcopydb ? `, pgcopydb ${r.machine.pgcopydb}` : '');
  const dataset = r.dataset ? `data: scale ${opts.scale}, ${fmt.mb(r.dataset.bytes)}, ${fmt.n(r.dataset.rows)} rows in ${ALL_TABLES.length} tables` : '';
  const extra: string[] = [];
  if (r.copy?.walbridge.tables?.length) {
    extra.push("walbridge's own per-table copy timings (log 'copy finished'), largest first:");
    for (const t of [...r.copy.walbridge.tables].sort((a, b) => b.bytes - a.bytes).slice(0, 8)) {
      extra.push(`  ${t.table.padEnd(32)} ${fmt.n(t.rows).padStart(10)} rows ${fmt.mb(t.bytes).padStart(7)} ${fmt.s(t.seconds).padStart(8)}  ${(t.bytes / 1048576 / Math.max(t.seconds, 0.001)).toFixed(1)} MB/s`);
    }
  }
  for (const [k, v] of Object.entries({ 'copy checks': [r.copy?.walbridge.check, r.copy?.native.check, r.copy?.pgdump.check, r.copy?.pgcopydb.check], verify: [r.verify?.walbridge, r.drain?.native.check] })) {
    const xs = v.filter((x): x is string => typeof x === 'string');
    if (xs.length) extra.push(`${k}: ${xs.join(' | ')}`);
  }
  if (r.drain?.walbridge.activity) {
    extra.push("walbridge's sessions during the drain (pg_stat_activity every 100 ms: share of samples per state / wait event):");
    for (const [side, xs] of Object.entries(r.drain.walbridge.activity)) {
      for (const [k, v] of xs.slice(0, 6)) extra.push(`  ${side.padEnd(6)} ${(100 * v).toFixed(0).padStart(3)}%  ${k}`);
    }
  }
  if (r.wan?.method) extra.push(`WAN: ${r.wan.method}`);
  if (r.wal && !r.wal.error && r.wal.copySeconds < 20 && !quick) extra.push(`NOTE: the retained-WAL copy lasted only ${fmt.s(r.wal.copySeconds)} (< 20 s): raise --scale or the table size`);
  if (r.errors.length) extra.push(`ERRORS:\n  ${r.errors.map((e) => e.split('\n').slice(0, 6).join('\n    ')).join('\n  ')}`);
  if (r.profiles) {
    for (const [label, p] of Object.entries(r.profiles)) {
      extra.push(`CPU profile of walbridge (${label}), ${(p.totalMs / 1000).toFixed(1)} s sampled, top self time:`);
      for (const e of p.top.slice(0, 12)) extra.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${e.fn}  ${e.where}`);
    }
  }
  const cmd = `npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`;
  const text = [head, dataset, '', textTable(rows), '', ...extra, '', ...MEANINGS].join('\n');
  const md = [
    `## walbridge benchmark (\`${cmd}\`)`,
    '',
    `${head}. ${dataset}.`,
    '',
    markdownTable(rows),
    '',
    '```',
    ...extra,
    '```',
    '',
    ...MEANINGS.map((l) => l.replace(/^- /, '- ')),
    '',
    'Commands used:',
    '',
    ...Object.entries(r.commands).map(([k, v]) => `- ${k}: \`${v}\``),
    '',
  ].join('\n');
  return { text, md };
}

let written = false;

function writeOutputs(): void {
  if (written) return;
  written = true;
  results.seconds = (Date.now() - t00) / 1000;
  const { text, md } = render();
  process.stdout.write(`\n${text}\n`);
  fs.mkdirSync(path.dirname(outBase), { recursive: true });
  fs.writeFileSync(`${outBase}.json`, `${JSON.stringify(results, null, 2)}\n`);
  if (!quick || args.out) fs.writeFileSync(`${outBase}.md`, md);
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), `${outBase}.json`)}${!quick || args.out ? ` and ${path.relative(process.cwd(), `${outBase}.md`)}` : ''}; ${results.seconds.toFixed(0)} s in all\n`);
}



// Ctrl-C or a crash: still write what was measured so far.
onExit(() => {
  if (!written) {
    results.errors.push('interrupted: partial results');
    writeOutputs();
  }
});

main()
  .then(() => {
    writeOutputs();
    process.exit(results.errors.length > 0 ? 1 : 0);
  })
  .catch((err: unknown) => {
    results.errors.push(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    try {
      writeOutputs();
    } catch {
      // nothing more to say
    }
    process.stderr.write(`\nbenchmark failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
