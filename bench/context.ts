/**
 * What every scenario of `npm run bench` is given (the clusters, the options, a way to say what it
 * does) and what it hands back: its own figures, typed, plus the lines it adds to the run's shared
 * records (commands, peak RSS, CPU profiles, errors). run.ts gathers them into `Results`, which is
 * written as bench/results/latest.json: docs and the README quote that shape, keep it.
 */
import type { Cluster } from '../test/harness/cluster.js';
import type { Baseline } from './baseline.js';
import type { BulkRanges } from './dataset.js';
import type { LagStats } from './lag.js';
import type { ProfileEntry } from './profile.js';
import type { Workload } from './pgbench.js';
import type { RetainedWalResult } from './retained-wal.js';
import type { TableCopy } from './walbridge.js';

export const SCENARIOS = ['copy', 'drain', 'live', 'bigtxn', 'wal', 'wan', 'cutover', 'convert', 'slots'] as const;
export type Scenario = (typeof SCENARIOS)[number];
/**
 * Run only when named in --only: the cutover scenario builds source databases of its own at 1x
 * and 4x and ends eight migrations, about 21 minutes at the default scale; the convert scenario
 * builds a table of its own and copies and streams it twice, about 3–4 minutes; the slots scenario
 * measures what each extra replication slot costs the source (table groups), about 4 minutes.
 */
export const OPT_IN: readonly Scenario[] = ['cutover', 'convert', 'slots'];

export interface BenchOptions {
  scale: number;
  backlog: number;
  liveSeconds: number;
  /** The throttled live run's rate (tps): a busy app, well under what this machine reaches. */
  liveRate: number;
  clients: number;
  bigRows: number;
  wanRtt: number;
  walTableMB: number;
  profile: boolean;
  /** --set NAME=VALUE: walbridge settings for every walbridge run (tuning experiments). */
  walbridgeSettings: Record<string, string>;
  /** Cutovers under load per scale (each a fresh migration); the pause is their median. */
  cutoverRuns: number;
  /** A pgcopydb with `compare data` (0.13 on; Debian 12's 0.10 has none), for the verify throughput. */
  pgcopydbCompare: string;
  /** The convert scenario's backlog: transactions, each updating one row's embedding. */
  convertUpdates: number;
  /** The slots scenario: seconds of each live pgbench run, rounds over the configurations, backlog transactions. */
  slotsSeconds: number;
  slotsRounds: number;
  slotsBacklog: number;
}

export interface BenchContext {
  source: Cluster;
  target: Cluster;
  ranges: BulkRanges;
  /** Row counts of the source's app database, to check each copy against. */
  sourceCounts: Record<string, number>;
  opts: BenchOptions;
  quick: boolean;
  only: ReadonlySet<Scenario>;
  /** walbridge from the source's app database to the target's app database. */
  wbEnv: Record<string, string>;
  /** Where the daemons write CPU profiles (--profile), else null. */
  profileDir: string | null;
  /** --baseline REV: another build, measured next to this one in the copy and drain; else null. */
  baseline: Baseline | null;
  say: (s: string) => void;
}

// ---------------------------------------------------------------------------------------------
// The figures of each scenario
// ---------------------------------------------------------------------------------------------

export interface PeerCopy {
  seconds?: number;
  /** CPU time the whole machine spent meanwhile (both servers, the tool, everything). */
  machineCpuSeconds?: number;
  error?: string;
  check?: string;
}

/** One walbridge build's copy (this checkout's, or the baseline's). */
export interface WalbridgeCopy extends PeerCopy {
  backfillSeconds?: number;
  tables?: TableCopy[];
  copiedBytes?: number;
  peakRssMb?: number;
  /** CPU seconds of the walbridge process itself, from its start until it streams (the relay's share of machineCpuSeconds). */
  daemonCpuSeconds?: number;
}

export interface CopyResults {
  walbridge: WalbridgeCopy & { copyJobs: string };
  native: PeerCopy;
  pgdump: PeerCopy;
  pgcopydb: PeerCopy;
}

export interface BacklogFigures {
  transactions: number;
  failed: number;
  changes: number;
  walBytes: number;
  pgbenchSeconds: number;
  pgbenchTps: number;
}

/** One walbridge build's drain of the backlog (this checkout's, or the baseline's). */
export interface WalbridgeDrain {
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
}

export interface DrainResults {
  /** The pgbench script that wrote the backlog (bench/<workload>.pgbench). */
  workload: Workload;
  backlog: BacklogFigures;
  walbridge: WalbridgeDrain;
  native: { seconds?: number; confirmedSeconds?: number; changesPerSec?: number; txPerSec?: number; cpu?: Record<string, number>; check?: string; error?: string };
  /** pg_recvlogical reading the same backlog to /dev/null: the walsender's own pace. */
  decodeOnly?: { seconds?: number; changesPerSec?: number; /** Every read's seconds; the fastest is the figure. */ runs?: number[]; error?: string };
}

export interface LiveResults {
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
}

export interface LiveNativeResults {
  pgbenchTps: number;
  lag: LagStats;
  catchUpSeconds: number;
  error?: string;
}

export interface BigTxnResults {
  rows: number;
  insertSeconds: number;
  applySeconds?: number;
  peakRssMb?: number;
  targetRows?: number;
  error?: string;
}

export interface VerifyResults {
  walbridge: string;
}

export type WalResults = Omit<RetainedWalResult, 'samples'> & { tableBytes: number; loadMBps: number; samples: number; error?: string };

export interface WanResults {
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
}

/** One cutover under pgbench at full rate, on a fresh migration. */
export interface CutoverRun {
  /** How long writes were refused, as the cutover recorded it (walbridge.cutover.writes_paused_seconds). */
  pausedSeconds?: number;
  /**
   * The pause by step, from the times the cutover printed each step (this process's clock): the
   * target applying up to the fence, the sequences, the check of the rows changed since; `fence`
   * is the rest (raising it, waiting for the writes under way).
   */
  split?: { fence: number; apply: number; sequences: number; check: number };
  /** Rows compared inside the pause (changed since the last check before the fence). */
  rowsCheckedInPause?: number;
  /** The whole command, and its part before the fence (checking every table while the app writes). */
  commandSeconds?: number;
  beforeFenceSeconds?: number;
  /** pgbench until the fence stopped its clients. */
  pgbenchTps?: number;
  /** pgbench clients stopped by the fence, and what the first one was told. */
  refusedClients?: number;
  refusal?: string;
  /** Row counts of every table, source (fenced, so still) against target, after the cutover. */
  check?: string;
  /** What the cutover printed, each line with the seconds since it started. */
  output?: string[];
  error?: string;
}

/** The cutover of earlier releases, once: the app stopped, a quiet period, every table verified inside the pause. */
export interface CutoverOldWay {
  /** From pgbench's exit (the app stopped) until the cutover was recorded (walbridge.cutover.at). */
  pausedSeconds?: number;
  /** Of which: waiting for the quiet period (from the app's stop), and verifying every table. */
  quietSeconds?: number;
  verifySeconds?: number;
  check?: string;
  error?: string;
}

/** Seconds and MB/s of table data compared, for one tool. */
export interface VerifyRate {
  seconds?: number;
  mbps?: number;
  result?: string;
  error?: string;
}

export interface CutoverScale {
  /** 1: the run's scale; 4: four times that. */
  multiple: number;
  scale: number;
  /** pg_table_size (heap + TOAST) summed over every migrated table and partition on the source, without indexes. */
  tableBytes: number;
  rows: number;
  runs: CutoverRun[];
  medianPausedSeconds?: number;
  oldWay?: CutoverOldWay;
  /** `walbridge verify` and `pgcopydb compare data` on a pair in step (after the copy, no writes), same tables. */
  verify?: { walbridge: VerifyRate; pgcopydb: VerifyRate };
  error?: string;
}

export interface CutoverResults {
  clients: number;
  runsPerScale: number;
  scales: CutoverScale[];
  /** The pgcopydb that ran `compare data`, and its version. */
  pgcopydb?: string;
  /** The whole scenario, databases built included: what it adds to a run. */
  seconds?: number;
}

/** CPU seconds while a convert run copied or streamed: each server whole (every process of it), and the daemon. */
export interface ConvertCpu {
  source: number;
  target: number;
  daemon: number;
}

/** One walbridge copy of the convert scenario's table, from starting the daemon until it streams. */
export interface ConvertCopy {
  /** From starting the daemon to its recorded phase 'streaming'. */
  seconds: number;
  /** The table's own copy (walbridge's 'copy finished' log line): the rates are over this. */
  tableSeconds: number;
  /** The COPY format walbridge logged for the table ('binary' or 'text'). */
  format?: string;
  /** The COPY data bytes walbridge moved. */
  copiedBytes: number;
  /** The source table's pg_table_size (heap + TOAST) per second of tableSeconds. */
  mbps: number;
  rowsPerSec: number;
  cpu: ConvertCpu;
  /** Session-seconds of walbridge's active sessions on the target, by what their statement does (pg_stat_activity every 100 ms). */
  targetWork: Array<[string, number]>;
  peakRssMb: number;
  check: string;
}

/** One walbridge drain of the convert scenario's updates (its slot held them since its copy). */
export interface ConvertStream {
  /** From starting the daemon until the marker after the updates is on the target. */
  seconds: number;
  /** From 'streaming changes from the slot' to the marker: the rate is over this. */
  streamSeconds: number;
  changesPerSec: number;
  cpu: ConvertCpu;
  /** walbridge's own processes: the daemon, its walsender on the source, its sessions on the target. */
  walbridgeCpu: Record<string, number>;
  peakRssMb: number;
  check: string;
}

export interface ConvertRun {
  copy?: ConvertCopy;
  stream?: ConvertStream;
  error?: string;
}

export interface ConvertResults {
  table: string;
  /** WALBRIDGE_CONVERT of the converted run. */
  conversion: string;
  dims: number;
  rows: number;
  /** pg_table_size (heap + TOAST, no index) of the table on the source. */
  tableBytes: number;
  /** The rows' text (sum of octet_length(row::text)): about what a text COPY moves. */
  textBytes: number;
  nullEmbeddings?: number;
  buildSeconds?: number;
  /** Update transactions of one row each, written with no consumer running. */
  updates: number;
  updatesSeconds?: number;
  updatesWalBytes?: number;
  /** The target column the same type as the source's: the table keeps the ordinary copy. */
  unconverted: ConvertRun;
  /** The target column bytea, WALBRIDGE_CONVERT=…=vector_to_float32le. */
  converted: ConvertRun;
  /**
   * float4's text output on the source (ns per element, over a sample as real[]), and what it would
   * cost for this table: the source's work in the converted copy with real pgvector (vector_out
   * for COPY's text format), which the stand-in, text already, does not do.
   */
  sourceTextOutput?: { nsPerElement: number; sampleElements: number; estimatedSeconds: number };
  /** The conversion's SQL expression alone, on the target, over the vectors' text: seconds against reading the text alone. */
  expression?: { readSeconds: number; convertSeconds: number; elements: number; nsPerElement: number };
  /** The whole scenario, its data built included. */
  seconds?: number;
}

/** One configuration of the slots scenario's slots: each with its publication (same name) and tables. */
export interface SlotsConfig {
  name: string;
  label: string;
  slots: Array<{ slot: string; tables: string[] }>;
  /** The one backlog decoded by these slots at once (no key for the configuration without a slot). */
  drain?: SlotsDrain;
  /** pgbench throttled to --live-rate with these slots read at once (the same work in each configuration), every round's runs added up. */
  steady?: SlotsLive;
  /** pgbench at its full rate with these slots read at once, every round's runs added up. */
  live?: SlotsLive;
  error?: string;
}

/** The backlog read by one configuration's slots at once; arrays: one entry per slot, in order. */
export interface SlotsDrain {
  /** From starting its pg_recvlogical until its walsender's sent_lsn passed the marker after the backlog. */
  seconds: number[];
  /** Each walsender's whole CPU time (it starts with its consumer). */
  walsenderCpu: number[];
  /** The whole source server (every process, those reaped meanwhile included) from the start to the last done. */
  sourceCpu: number;
  /** The pg_recvlogical processes (on this machine; not the source's in a real deployment). */
  consumerCpu: number;
  /** What each pg_recvlogical wrote (/dev/null): the pgoutput messages it received, one newline each. */
  sentBytes: number[];
}

/** pgbench (throttled or at full rate) with one configuration's slots read at once; sums over `runs` runs. */
export interface SlotsLive {
  runs: number;
  /** pgbench's seconds and transactions; tps: pgbench's own, weighted by seconds. */
  seconds: number;
  transactions: number;
  tps: number;
  /** pgbench's tps of each run, in the order they ran (the spread is the shared machine's noise). */
  tpsRuns: number[];
  /** Row changes (n_tup_ins+upd+del) and WAL the load wrote. */
  changes: number;
  walBytes: number;
  /** The whole source server, from pgbench's start until every walsender passed the marker after it. */
  sourceCpu: number;
  /** Each walsender over the same window (one entry per slot). */
  walsenderCpu: number[];
  consumerCpu: number;
  sentBytes: number[];
  /** From pgbench's end until the last walsender passed the marker (the longest of the runs). */
  catchUpSeconds: number;
}

export interface SlotsResults {
  clients: number;
  /** Seconds of each live run, and the rounds (each configuration once per round). */
  liveSeconds: number;
  /** The throttled runs' rate (pgbench -R, --live-rate). */
  steadyRate: number;
  rounds: number;
  backlog?: BacklogFigures;
  configs: SlotsConfig[];
  /** Rows the load wrote to the idle slot's table over the whole scenario (0: it sent nothing). */
  idleTableChanges?: number;
  seconds?: number;
}

export interface ProfileSummary {
  totalMs: number;
  top: ProfileEntry[];
}

/** The scenarios' figures: top-level keys of bench/results/latest.json, each set by one scenario. */
export interface Figures {
  copy?: CopyResults;
  drain?: DrainResults;
  /** The same drain of a backlog written by bench/sessions.pgbench: large jsonb documents rewritten. */
  drainSessions?: DrainResults;
  live?: LiveResults;
  /** The same at a steady rate an app might write at (pgbench -R). */
  liveSteady?: LiveResults;
  /** A native subscription under the same full-rate pgbench run. */
  liveNative?: LiveNativeResults;
  bigtxn?: BigTxnResults;
  verify?: VerifyResults;
  wal?: WalResults;
  wan?: WanResults;
  cutover?: CutoverResults;
  convert?: ConvertResults;
  slots?: SlotsResults;
}

/** --baseline REV: the build measured next to this one, and its figures (no key without the flag). */
export interface BaselineResults {
  rev: string;
  commit: string;
  subject: string;
  copy?: WalbridgeCopy;
  drain?: WalbridgeDrain;
  /** Its drain of the sessions workload's backlog. */
  drainSessions?: WalbridgeDrain;
}

/** The whole run, as written to bench/results/latest.json. */
export interface Results extends Figures {
  startedAt: string;
  seconds?: number;
  machine: { cpus: number; node: string; source: string; target: string; pgcopydb?: string };
  options: BenchOptions & { only: Scenario[]; quick: boolean };
  dataset?: { bytes: number; rows: number; tables: Record<string, number> };
  baseline?: BaselineResults;
  commands: Record<string, string>;
  rssMb: Record<string, number>;
  profiles?: Record<string, ProfileSummary>;
  errors: string[];
}

// ---------------------------------------------------------------------------------------------
// What a scenario hands back
// ---------------------------------------------------------------------------------------------

/** A scenario's figures, and what it adds to the run's shared records. */
export interface Outcome<F extends Figures> {
  figures: F;
  /** The commands run, as shown under "Commands used" (pgbench_backlog, pg_dump, …). */
  commands: Record<string, string>;
  /** Peak RSS of walbridge per scenario (MB). */
  rssMb: Record<string, number>;
  /** CPU profiles of the daemons it stopped (--profile), by label. */
  profiles: Record<string, ProfileSummary>;
  errors: string[];
}

export function outcome<F extends Figures>(figures: F): Outcome<F> {
  return { figures, commands: {}, rssMb: {}, profiles: {}, errors: [] };
}

/** Add one outcome's figures and records to another's (a scenario run within another) or to the run's. */
export function absorb(into: Outcome<Figures> | Results, from: Outcome<Figures>): void {
  Object.assign('figures' in into ? into.figures : into, from.figures);
  Object.assign(into.commands, from.commands);
  Object.assign(into.rssMb, from.rssMb);
  if (Object.keys(from.profiles).length > 0) into.profiles = { ...into.profiles, ...from.profiles };
  into.errors.push(...from.errors);
}
