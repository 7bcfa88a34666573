/**
 * Backlog drain: a backlog written by pgbench while no consumer runs, then the time walbridge (and
 * the baseline build, --baseline) and a native subscription each take to apply it, and the pace of
 * the source's walsender alone.
 */
import type { Cluster } from '../../test/harness/cluster.js';
import type { Baseline } from '../baseline.js';
import { absorb, outcome, type BenchContext, type DrainResults, type Figures, type Outcome, type WalbridgeDrain } from '../context.js';
import { CpuSampler } from '../cpu.js';
import { rowCounts } from '../dataset.js';
import { NATIVE, nativeDisable, nativeEnable, PG_RECVLOGICAL, waitNativeConfirmed } from '../peers.js';
import { waitForMarker, type Workload } from '../pgbench.js';
import { lastLines, runTool, toolEnv } from '../proc.js';
import { fmt } from '../report.js';
import { connect } from '../walbridge.js';
import { backendPids, COPY_TIMEOUT, countCheck, stopWalbridge, walbridgeDrain, writeBacklog, type Backlog, type WalbridgeRun } from './steps.js';

export interface DrainOutcome extends Outcome<{ drain: DrainResults; drainSessions?: DrainResults }> {
  /** The baseline's drains (--baseline), when it had its copy. */
  baseline?: { app?: WalbridgeDrain; sessions?: WalbridgeDrain };
}

/**
 * walbridge must have copied the app database (its slot is where the backlog starts); `nativeDb`
 * is a native subscription that copied it too, disabled, or null to leave native out; `baseline`
 * is the baseline build that copied it into its own database (its own slot), or null.
 * Two backlogs, one after the other, each drained by every consumer: the app's mix of writes
 * (bench/app.pgbench), then session documents of several kB rewritten each turn
 * (bench/sessions.pgbench). The native subscription is left enabled at the end.
 */
export async function measureDrain(ctx: BenchContext, nativeDb: string | null, baseline: Baseline | null): Promise<DrainOutcome> {
  const app = await measureWorkload(ctx, 'app', nativeDb, baseline);
  const rec: DrainOutcome = outcome({ drain: app.drain });
  absorb(rec, app.outcome);
  // The next backlog is written with no consumer running: the native subscription stops again.
  const nativeAgain = nativeDb !== null && !app.drain.native.error;
  if (nativeAgain) await nativeDisable(ctx.source, ctx.target, nativeDb);
  const sessions = await measureWorkload(ctx, 'sessions', nativeAgain ? nativeDb : null, baseline);
  absorb(rec, sessions.outcome);
  rec.figures.drainSessions = sessions.drain;
  if (baseline) rec.baseline = { ...(app.baseline ? { app: app.baseline } : {}), ...(sessions.baseline ? { sessions: sessions.baseline } : {}) };
  return rec;
}

/** One backlog of `workload`, drained by walbridge, the baseline, a native subscription, and the walsender alone. */
async function measureWorkload(
  ctx: BenchContext,
  workload: Workload,
  nativeDb: string | null,
  baseline: Baseline | null,
): Promise<{ drain: DrainResults; outcome: Outcome<Figures>; baseline?: WalbridgeDrain }> {
  const { source, target, opts, say } = ctx;
  const tag = workload === 'app' ? 'drain' : `drain (${workload})`;
  // Autovacuum working through the copies just made (or through the backlog) would land in one
  // consumer's drain and not another's: every database is vacuumed and analyzed first, and again
  // after the backlog is written.
  const databases = ['app', ...(nativeDb ? [nativeDb] : []), ...(baseline ? [baseline.db] : [])];
  await quiesce(ctx, databases);
  say(`${tag}: writing a backlog of ${fmt.n(opts.backlog)} transactions of bench/${workload}.pgbench (-c ${opts.clients}), no consumer running …`);
  const backlog = await writeBacklog(ctx, workload);
  await quiesce(ctx, databases);
  // Twins for the decode-only reference below, at the same position before the backlog.
  for (const slot of DECODE_SLOTS) await source.query(`SELECT pg_copy_logical_replication_slot('walbridge', $1)`, [slot], 'app');
  const { marker: _m, command, ...b } = backlog;
  const drain: DrainResults = { workload, backlog: b, walbridge: {}, native: {} };
  const rec = outcome({});
  rec.commands[workload === 'app' ? 'pgbench_backlog' : `pgbench_backlog_${workload}`] = command;
  say(`  backlog: ${fmt.n(b.transactions)} transactions, ${fmt.n(b.changes)} row changes, ${fmt.mb(b.walBytes)} of WAL (pgbench ${b.pgbenchTps.toFixed(0)} tps)`);

  say(`${tag}: walbridge …`);
  const label = workload === 'app' ? 'drain' : `drain-${workload}`;
  drain.walbridge = await timeWalbridgeDrain(ctx, backlog, rec, { name: 'walbridge', env: ctx.wbEnv, db: 'app', label });
  if (drain.walbridge.peakRssMb !== undefined) rec.rssMb[label] = drain.walbridge.peakRssMb;
  let baselineDrain: WalbridgeDrain | undefined;
  if (baseline) {
    say(`${tag}: ${baseline.name} (its own slot, its own copy of the database) …`);
    baselineDrain = await timeWalbridgeDrain(ctx, backlog, rec, { name: baseline.name, env: baseline.env, db: baseline.db, label: `baseline-${label}`, script: baseline.script });
  }

  if (nativeDb) {
    say(`${tag}: native subscription (ENABLE) …`);
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

  say(`${tag}: the walsender alone (pg_recvlogical to /dev/null, same backlog, ${DECODE_SLOTS.length} copies of the slot: the fastest read counts) …`);
  try {
    const runs: number[] = [];
    for (const slot of DECODE_SLOTS) runs.push(await decodeOnly(source, slot, backlog.marker.lsn));
    const seconds = Math.min(...runs);
    drain.decodeOnly = { seconds, changesPerSec: b.changes / seconds, runs };
    say(`  decode only ${fmt.s(seconds)} (${fmt.n(drain.decodeOnly.changesPerSec)} changes/s; reads took ${runs.map((r) => fmt.s(r)).join(', ')})`);
  } catch (err) {
    drain.decodeOnly = { error: (err as Error).message };
    say(`  decode only failed: ${drain.decodeOnly.error}`);
  } finally {
    for (const slot of DECODE_SLOTS) await source.query(`SELECT pg_drop_replication_slot($1)`, [slot], 'app').catch(() => undefined);
  }
  return { drain, outcome: rec, ...(baselineDrain ? { baseline: baselineDrain } : {}) };
}

/** One walbridge build drains the backlog from its slot into `db`, then stops: its figures, or its error (recorded). */
async function timeWalbridgeDrain(ctx: BenchContext, backlog: Backlog, rec: Outcome<Figures>, run: WalbridgeRun): Promise<WalbridgeDrain> {
  try {
    const d = await walbridgeDrain(ctx, run.env, run.db, backlog, run.label, { script: run.script });
    await stopWalbridge(ctx, d.w, run.label, rec.profiles);
    const fig: WalbridgeDrain = {
      seconds: d.seconds,
      ...(d.streamSeconds !== null ? { streamSeconds: d.streamSeconds } : {}),
      lsnSeconds: d.lsnSeconds,
      changesPerSec: backlog.changes / d.seconds,
      txPerSec: backlog.transactions / d.seconds,
      peakRssMb: d.w.rss.peakMb(),
      activity: d.activity,
      cpu: d.cpu,
    };
    ctx.say(`  ${run.name} ${fmt.s(d.seconds)} (${fmt.n(fig.changesPerSec)} changes/s, ${fmt.n(fig.txPerSec)} tx/s; applied_lsn passed at ${fmt.s(d.lsnSeconds)})`);
    return fig;
  } catch (err) {
    const error = (err as Error).message;
    rec.errors.push(`${run.label}: ${error}`);
    ctx.say(`  ${run.name} failed: ${error}`);
    return { error };
  }
}

/** VACUUM ANALYZE of `databases` on the target and of the app database on the source. */
async function quiesce(ctx: BenchContext, databases: string[]): Promise<void> {
  await ctx.source.query('VACUUM (ANALYZE)', [], 'app');
  for (const db of databases) await ctx.target.query('VACUUM (ANALYZE)', [], db);
}

/**
 * The walsender's pace is the bar the drains are held to: read three times (each from its own
 * copy of the slot), the fastest, since on a shared machine a slow read says more about the
 * machine than about the walsender (single reads of the same backlog varied by a third).
 */
const DECODE_SLOTS = ['bench_decode_1', 'bench_decode_2', 'bench_decode_3'];

/**
 * The source's own limit: how fast its walsender decodes the backlog for a consumer that does
 * nothing with it (pg_recvlogical writing pgoutput to /dev/null), from a copy of the slot.
 */
async function decodeOnly(source: Cluster, slot: string, endLsn: string): Promise<number> {
  const args = ['-d', `host=${source.host} port=${source.port} dbname=app user=postgres replication=database`, '--slot', slot, '--start', '--endpos', endLsn,
    '-o', 'proto_version=1', '-o', 'publication_names=walbridge', '-f', '/dev/null', '--no-loop'];
  const t0 = Date.now();
  const r = await runTool(PG_RECVLOGICAL, args, { env: toolEnv({ PGPASSWORD: source.password }) });
  if (r.code !== 0) throw new Error(`pg_recvlogical failed (exit ${r.code}): ${lastLines(r.stdout + r.stderr, 6)}`);
  return (Date.now() - t0) / 1000;
}
