/**
 * Initial copy: pg_dump | psql, pgcopydb, a native subscription and walbridge, one after the
 * other, each into a fresh empty database on the same target.
 */
import { outcome, type BenchContext, type CopyResults, type Outcome, type PeerCopy } from '../context.js';
import { machineCpuSeconds } from '../cpu.js';
import { createTargetDb, rowCounts } from '../dataset.js';
import { createNativePublication, ensurePgcopydb, nativeCommands, nativeCopy, nativeDisable, pgcopydb, pgcopydbCommand, pgDumpCommand, pgDumpPsql } from '../peers.js';
import { fmt } from '../report.js';
import { COPY_TIMEOUT, countCheck, dropNativeDb, NATIVE_DB, stopWalbridge, walbridgeCopy, type WbCopy } from './steps.js';

export interface CopyOutcome extends Outcome<{ copy: CopyResults }> {
  pgcopydbVersion?: string;
  /** walbridge copied the app database and stopped: its slot is there for the scenarios after. */
  walbridgeCopied: boolean;
  /** The native subscription's database, kept (disabled) for the drain; null if dropped. */
  nativeDb: string | null;
}

/** `keepNative`: keep the native subscription for the drain after, if its copy succeeded. */
export async function measureCopy(ctx: BenchContext, keepNative: boolean): Promise<CopyOutcome> {
  const { source, target, sourceCounts, say } = ctx;
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
  const nativeKept = keepNative && !copy.native.error;
  if (nativeKept) {
    // Idle while walbridge copies: no apply worker, so it cannot disturb the measurement.
    await nativeDisable(source, target, NATIVE_DB);
  } else {
    await dropNativeDb(ctx, NATIVE_DB);
  }
  await target.query('CHECKPOINT', [], 'postgres');

  say('copy: walbridge …');
  rec.commands.walbridge = 'node dist/daemon.js  (SOURCE_DATABASE_URL, TARGET_DATABASE_URL, WALBRIDGE_SCHEMAS=public,auth; other settings default)';
  let wbCopy: WbCopy | null = null;
  try {
    const cpu0 = machineCpuSeconds();
    wbCopy = await walbridgeCopy(ctx, ctx.wbEnv, 'app', 'copy');
    copy.walbridge.machineCpuSeconds = machineCpuSeconds() - cpu0;
    copy.walbridge.seconds = wbCopy.seconds;
    copy.walbridge.backfillSeconds = wbCopy.backfillSeconds ?? undefined;
    copy.walbridge.tables = wbCopy.tables;
    copy.walbridge.copiedBytes = wbCopy.copiedBytes;
    copy.walbridge.check = countCheck(sourceCounts, await rowCounts(target, 'app'));
    say(`  walbridge ${fmt.s(wbCopy.seconds)} to streaming (backfill ${fmt.s(wbCopy.backfillSeconds)}); ${copy.walbridge.check}`);
    await stopWalbridge(ctx, wbCopy.w, 'copy', rec.profiles);
    copy.walbridge.peakRssMb = wbCopy.w.rss.peakMb();
    rec.rssMb.copy = copy.walbridge.peakRssMb;
  } catch (err) {
    copy.walbridge.error = (err as Error).message;
    say(`  walbridge failed: ${copy.walbridge.error}`);
    rec.errors.push(`copy: ${copy.walbridge.error}`);
    if (wbCopy) await wbCopy.w.stop();
    wbCopy = null;
  }
  return { ...rec, ...(pgcopydbVersion ? { pgcopydbVersion } : {}), walbridgeCopied: wbCopy !== null, nativeDb: nativeKept ? NATIVE_DB : null };
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
