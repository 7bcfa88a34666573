/**
 * walbridge (and native) steps shared by the scenarios: copy onto an empty target, write a
 * backlog, drain it, tear a slot down, check what a copy left on the target.
 */
import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import type { Cluster } from '../../test/harness/cluster.js';
import { assertSameContent } from '../../test/harness/compare.js';
import type { Baseline } from '../baseline.js';
import { outcome, type BacklogFigures, type BenchContext, type Outcome, type ProfileSummary, type VerifyResults } from '../context.js';
import { CpuSampler } from '../cpu.js';
import { ALL_TABLES, countDiffs } from '../dataset.js';
import { dropNative } from '../peers.js';
import { currentLsn, lsnDiff, runPgbench, settledRowChanges, waitForMarker, writeMarker, type Workload } from '../pgbench.js';
import { sleep } from '../proc.js';
import { newestProfile, summariseProfile } from '../profile.js';
import {
  ActivitySampler,
  connect,
  copyTimings,
  daemonTail,
  dropSlotWhenFree,
  launchWalbridge,
  logTime,
  type LaunchOptions,
  waitForApplied,
  waitForRecordedPhase,
  type TableCopy,
  type Walbridge,
} from '../walbridge.js';

export const COPY_TIMEOUT = 30 * 60_000;

/** The target database a native subscription copies into, measured (copy.ts) or not (run.ts). */
export const NATIVE_DB = 'peer_native';

/** Node's arguments for a daemon that writes a CPU profile under this label (--profile), else none. */
export function nodeArgsFor(ctx: BenchContext, label: string): string[] | undefined {
  if (!ctx.profileDir) return undefined;
  const dir = path.join(ctx.profileDir, label);
  fs.mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', '--cpu-prof-dir', dir];
}

/** Stop a daemon and, with --profile, add the summary of the profile it wrote to `profiles`. */
export async function stopWalbridge(ctx: BenchContext, w: Walbridge, label: string, profiles: Record<string, ProfileSummary>): Promise<void> {
  await w.stop();
  if (!ctx.profileDir) return;
  const file = newestProfile(path.join(ctx.profileDir, label));
  if (!file) return;
  const s = summariseProfile(file, 15);
  profiles[label] = { totalMs: s.totalMs, top: s.entries };
}

export interface WbCopy {
  w: Walbridge;
  seconds: number;
  backfillSeconds: number | null;
  tables: TableCopy[];
  copiedBytes: number;
}

/** Where and which daemon a step starts: a network namespace (WAN), another build (--baseline). */
export type Launch = Pick<LaunchOptions, 'netns' | 'script'>;

/** One walbridge run in a scenario: its name in the lines said, environment, target database, label (profiles, errors), build. */
export interface WalbridgeRun extends Launch {
  name: string;
  env: Record<string, string>;
  db: string;
  label: string;
}

/** Start walbridge on an empty target and wait until it streams (copy + spool applied). */
export async function walbridgeCopy(ctx: BenchContext, env: Record<string, string>, targetDb: string, label: string, launch: Launch = {}): Promise<WbCopy> {
  const tgt = await connect(ctx.target, targetDb);
  try {
    const nodeArgs = nodeArgsFor(ctx, label);
    const w = await launchWalbridge(env, { ...launch, ...(nodeArgs ? { nodeArgs } : {}) });
    const at = await waitForRecordedPhase(w, tgt, 'streaming', COPY_TIMEOUT);
    const tables = copyTimings(w);
    const backfill = logTime(w, 'backfill finished; applying the changes spooled meanwhile');
    return { w, seconds: (at - w.startedAt) / 1000, backfillSeconds: backfill === null ? null : backfill / 1000, tables, copiedBytes: tables.reduce((a, t) => a + t.bytes, 0) };
  } finally {
    await tgt.end().catch(() => undefined);
  }
}

export interface Backlog extends BacklogFigures {
  marker: { id: number; lsn: string };
  /** The pgbench command that wrote it. */
  command: string;
}

/** Write the backlog with pgbench while no consumer runs; ends with a marker transaction. */
export async function writeBacklog(ctx: BenchContext, workload: Workload = 'app'): Promise<Backlog> {
  const c0 = await settledRowChanges(ctx.source);
  const l0 = await currentLsn(ctx.source);
  const pb = await runPgbench(ctx.source, ctx.ranges, { transactions: ctx.opts.backlog, clients: ctx.opts.clients, workload });
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
    command: pb.command,
  };
}

export interface WbDrain {
  w: Walbridge;
  seconds: number;
  streamSeconds: number | null;
  lsnSeconds: number;
  activity: Record<string, Array<[string, number]>>;
  cpu: Record<string, number>;
}

/** The drain's CPU groups on the servers, found by application_name (every walbridge session's starts with it). */
const DRAIN_WALSENDERS = "backend_type = 'walsender' AND application_name LIKE 'walbridge%'";
const DRAIN_TARGET_SESSIONS = "application_name LIKE 'walbridge%'";

/** Start walbridge on a target that has the data, and time until the backlog's marker is applied. */
export async function walbridgeDrain(ctx: BenchContext, env: Record<string, string>, targetDb: string, backlog: Backlog, label: string, launch: Launch = {}): Promise<WbDrain> {
  const nodeArgs = nodeArgsFor(ctx, label);
  const [sc, tc, scpu, tcpu] = await Promise.all([connect(ctx.source, 'postgres'), connect(ctx.target, 'postgres'), connect(ctx.source, 'postgres'), connect(ctx.target, 'postgres')]);
  // The CPU groups count their processes from zero: a session of a daemon stopped a moment ago
  // (the other build's drain, just before this one) would add its whole CPU time to this drain.
  await Promise.all([
    waitNoBackends(scpu, DRAIN_WALSENDERS),
    waitNoBackends(tcpu, `${DRAIN_TARGET_SESSIONS} AND application_name NOT LIKE 'walbridge-bench%'`),
  ]);
  const samplers = { source: new ActivitySampler(sc), target: new ActivitySampler(tc) };
  const w = await launchWalbridge(env, { ...launch, ...(nodeArgs ? { nodeArgs } : {}) });
  const cpu = new CpuSampler(
    {
      daemon: () => (w.daemon.child.pid === undefined ? [] : [w.daemon.child.pid]),
      walsender: () => backendPids(scpu, DRAIN_WALSENDERS),
      target: () => backendPids(tcpu, DRAIN_TARGET_SESSIONS),
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
export async function backendPids(c: pg.Client, where: string): Promise<number[]> {
  const r = await c.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE ${where}`);
  return r.rows.map((x) => x.pid);
}

/** Wait until no backend matches a pg_stat_activity condition (a stopped client's backends exit a moment after it). */
async function waitNoBackends(c: pg.Client, where: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await backendPids(c, where)).length > 0) {
    if (Date.now() > deadline) throw new Error(`backends still there after ${timeoutMs / 1000} s: ${where}`);
    await sleep(100);
  }
}

/** Remove walbridge's slot and publication from a source database (after the daemon stopped). */
export async function teardownWalbridge(source: Cluster, database: string, slot = 'walbridge', publication = 'walbridge'): Promise<void> {
  const c = await connect(source, database);
  try {
    await dropSlotWhenFree(c, slot);
    await c.query(`DROP PUBLICATION IF EXISTS ${publication}`);
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Remove a native subscription and the target database it fed. */
export async function dropNativeDb(ctx: BenchContext, nativeDb: string): Promise<void> {
  await dropNative(ctx.source, ctx.target, nativeDb);
  await ctx.target.query(`DROP DATABASE ${nativeDb} WITH (FORCE)`, [], 'postgres');
}

/** Remove the baseline's slot and publication from the source and the target database it fed. */
export async function dropBaseline(ctx: BenchContext, b: Baseline): Promise<void> {
  await teardownWalbridge(ctx.source, 'app', b.slot, b.publication);
  await ctx.target.query(`DROP DATABASE IF EXISTS ${b.db} WITH (FORCE)`, [], 'postgres');
}

export function countCheck(src: Record<string, number>, tgt: Record<string, number>): string {
  const d = countDiffs(src, tgt);
  return d.length === 0 ? `row counts equal (${Object.keys(src).length} tables)` : `ROW COUNTS DIFFER: ${d.join('; ')}`;
}

/** Every table, row by row, source against walbridge's target; a difference is also an error. */
export async function verifyWalbridge(ctx: BenchContext): Promise<Outcome<{ verify: VerifyResults }>> {
  ctx.say('verify: every table, row by row, source vs walbridge target …');
  const errors: string[] = [];
  let verify: VerifyResults;
  try {
    await assertSameContent(ctx.source.url('app'), ctx.target.url('app'), ALL_TABLES);
    verify = { walbridge: `equal, row by row (${ALL_TABLES.length} tables)` };
  } catch (err) {
    verify = { walbridge: `DIFFERENT: ${(err as Error).message}` };
    errors.push(`verify: ${(err as Error).message}`);
  }
  ctx.say(`  ${verify.walbridge}`);
  return { ...outcome({ verify }), errors };
}
