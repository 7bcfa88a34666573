/**
 * Initial copy: pg_dump | psql, pgcopydb, a native subscription and walbridge, one after the
 * other, each into a fresh empty database on the same target; then the baseline build
 * (--baseline), into one of its own.
 */
import { outcome, type BenchContext, type CopyResults, type Figures, type Outcome, type PeerCopy, type WalbridgeCopy } from '../context.js';
import { cpuSeconds, machineCpuSeconds } from '../cpu.js';
import { createTargetDb, rowCounts } from '../dataset.js';
import { createNativePublication, ensurePgcopydb, nativeCommands, nativeCopy, nativeDisable, pgcopydb, pgcopydbCommand, pgDumpCommand, pgDumpPsql } from '../peers.js';
import { fmt } from '../report.js';
import { COPY_TIMEOUT, countCheck, dropBaseline, dropNativeDb, NATIVE_DB, stopWalbridge, walbridgeCopy, type WalbridgeRun, type WbCopy } from './steps.js';

export interface CopyOutcome extends Outcome<{ copy: CopyResults }> {
  pgcopydbVersion?: string;
  /** walbridge copied the app database and stopped: its slot is there for the scenarios after. */
  walbridgeCopied: boolean;
  /** The native subscription's database, kept (disabled) for the drain; null if dropped. */
  nativeDb: string | null;
  /** --baseline: its copy's figures; `kept`: its database and slot are there for the drain. */
  baseline?: { copy: WalbridgeCopy; kept: boolean };
}

/** `forDrain`: keep the native subscription and the baseline for the drain after, if their copies succeeded. */
export async function measureCopy(ctx: BenchContext, forDrain: boolean): Promise<CopyOutcome> {
  const { source, target, say } = ctx;
  const copy: CopyResults = { walbridge: { copyJobs: ctx.wbEnv.WALBRIDGE_COPY_JOBS ?? 'default (4)' }, native: {}, pgdump: {}, pgcopydb: {} };
  const rec = outcome({ copy });
  let pgcopydbVersion: string | undefined;
  rec.commands.pg_dump = pgDumpCommand('<source-url>', '<target-url>');
  rec.commands.pgcopydb = pgcopydbCommand('<source-url>', '<target-url>', '<tmpdir>');

  say('copy: pg_dump --data-only | psql …');
  await createTargetDb(target, 'peer_pgdump');
  await timePeerCopy(ctx, copy.pgdump, 'pg_dump|psql', 'peer_pgdump', () => pgDumpPsql(source.url('app'), target.url('peer_pgdump')));
  await target.query('DROP DATABASE peer_pgdump WITH (FORCE)', [], 'postgres');
  await target.query('CHECKPOINT', [], 'postgres');

  say('copy: pgcopydb copy table-data --table-jobs 2 …');
  const tool = await ensurePgcopydb(say);
  if (!tool.ok) {
    copy.pgcopydb.error = tool.why ?? 'unavailable';
    say(`  pgcopydb skipped: ${copy.pgcopydb.error}`);
  } else {
    pgcopydbVersion = tool.version;
    await createTargetDb(target, 'peer_pgcopydb');
    await timePeerCopy(ctx, copy.pgcopydb, 'pgcopydb', 'peer_pgcopydb', () => pgcopydb(source.url('app'), target.url('peer_pgcopydb')));
    await target.query('DROP DATABASE peer_pgcopydb WITH (FORCE)', [], 'postgres');
    await target.query('CHECKPOINT', [], 'postgres');
  }

  say('copy: native subscription (copy_data = true) …');
  rec.commands.native = `${nativeCommands.publication}; ${nativeCommands.subscription}`;
  await createTargetDb(target, NATIVE_DB);
  await createNativePublication(source);
  await timePeerCopy(ctx, copy.native, 'native', NATIVE_DB, () => nativeCopy(source, target, NATIVE_DB, COPY_TIMEOUT));
  const nativeKept = forDrain && !copy.native.error;
  if (nativeKept) {
    // Idle while walbridge copies: no apply worker, so it cannot disturb the measurement.
    await nativeDisable(source, target, NATIVE_DB);
  } else {
    await dropNativeDb(ctx, NATIVE_DB);
  }
  await target.query('CHECKPOINT', [], 'postgres');

  say('copy: walbridge …');
  rec.commands.walbridge = 'node dist/daemon.js  (SOURCE_DATABASE_URL, TARGET_DATABASE_URL, WALBRIDGE_SCHEMAS=public,auth; other settings default)';
  const walbridgeCopied = await timeWalbridgeCopy(ctx, copy.walbridge, rec, { name: 'walbridge', env: ctx.wbEnv, db: 'app', label: 'copy' });
  if (copy.walbridge.peakRssMb !== undefined) rec.rssMb.copy = copy.walbridge.peakRssMb;

  let baseline: CopyOutcome['baseline'];
  const b = ctx.baseline;
  if (b) {
    // Measured as walbridge's just before: a fresh empty database, the target's dirty pages written out.
    say(`copy: ${b.name} (its own database, slot and publication) …`);
    await target.query('CHECKPOINT', [], 'postgres');
    await createTargetDb(target, b.db);
    baseline = { copy: {}, kept: false };
    const copied = await timeWalbridgeCopy(ctx, baseline.copy, rec, { name: b.name, env: b.env, db: b.db, label: 'baseline-copy', script: b.script });
    baseline.kept = forDrain && copied;
    if (!baseline.kept) await dropBaseline(ctx, b);
  }
  return {
    ...rec,
    ...(pgcopydbVersion ? { pgcopydbVersion } : {}),
    walbridgeCopied,
    nativeDb: nativeKept ? NATIVE_DB : null,
    ...(baseline ? { baseline } : {}),
  };
}

/**
 * One walbridge build copies into `db` (empty) until it streams, then stops: its seconds, the whole
 * machine's CPU seconds meanwhile, its row counts and peak RSS into `fig`. False if it failed
 * (recorded); its slot and publication stay on the source either way.
 */
async function timeWalbridgeCopy(ctx: BenchContext, fig: WalbridgeCopy, rec: Outcome<Figures>, run: WalbridgeRun): Promise<boolean> {
  let wbCopy: WbCopy | null = null;
  try {
    const cpu0 = machineCpuSeconds();
    wbCopy = await walbridgeCopy(ctx, run.env, run.db, run.label, { script: run.script });
    fig.machineCpuSeconds = machineCpuSeconds() - cpu0;
    const pid = wbCopy.w.daemon.child.pid;
    fig.daemonCpuSeconds = (pid === undefined ? null : cpuSeconds(pid)) ?? undefined;
    fig.seconds = wbCopy.seconds;
    fig.backfillSeconds = wbCopy.backfillSeconds ?? undefined;
    fig.tables = wbCopy.tables;
    fig.copiedBytes = wbCopy.copiedBytes;
    fig.check = countCheck(ctx.sourceCounts, await rowCounts(ctx.target, run.db));
    ctx.say(`  ${run.name} ${fmt.s(wbCopy.seconds)} to streaming (backfill ${fmt.s(wbCopy.backfillSeconds)}); ${fig.check}`);
    await stopWalbridge(ctx, wbCopy.w, run.label, rec.profiles);
    fig.peakRssMb = wbCopy.w.rss.peakMb();
    return true;
  } catch (err) {
    fig.error = (err as Error).message;
    ctx.say(`  ${run.name} failed: ${fig.error}`);
    rec.errors.push(`${run.label}: ${fig.error}`);
    if (wbCopy) await wbCopy.w.stop();
    return false;
  }
}

/** One peer's copy into `db`: its seconds, the whole machine's CPU seconds meanwhile, its row counts. */
async function timePeerCopy(ctx: BenchContext, peer: PeerCopy, name: string, db: string, copyInto: () => Promise<number>): Promise<void> {
  try {
    const cpu0 = machineCpuSeconds();
    peer.seconds = await copyInto();
    peer.machineCpuSeconds = machineCpuSeconds() - cpu0;
    peer.check = countCheck(ctx.sourceCounts, await rowCounts(ctx.target, db));
    ctx.say(`  ${name} ${fmt.s(peer.seconds)}; ${peer.check}`);
  } catch (err) {
    peer.error = (err as Error).message;
    ctx.say(`  ${name} failed: ${peer.error}`);
  }
}
