/**
 * Live lag: pgbench at full rate, then throttled, while walbridge streams from the app database
 * it copied. The big transaction (bigtxn.ts) runs on the same daemon afterwards, then every
 * table is compared row by row.
 */
import type pg from 'pg';
import { absorb, outcome, type BenchContext, type Figures, type LiveResults, type Outcome } from '../context.js';
import { LagSampler, quantile } from '../lag.js';
import { runPgbench, waitForMarker, writeMarker } from '../pgbench.js';
import { fmt } from '../report.js';
import { connect, launchWalbridge, metric, waitForRecordedPhase, type Walbridge } from '../walbridge.js';
import { measureBigTxn } from './bigtxn.js';
import { nodeArgsFor, stopWalbridge, verifyWalbridge } from './steps.js';

export type LiveOutcome = Outcome<Pick<Figures, 'live' | 'liveSteady' | 'bigtxn' | 'verify'>>;

/** walbridge must have copied the app database; live and bigtxn each run if selected with --only. */
export async function measureLive(ctx: BenchContext): Promise<LiveOutcome> {
  const { source, target, only, say } = ctx;
  const out: LiveOutcome = outcome({});
  const tgtClient = await connect(target, 'app');
  let w: Walbridge | null = null;
  try {
    const nodeArgs = nodeArgsFor(ctx, 'live');
    w = await launchWalbridge(ctx.wbEnv, nodeArgs ? { nodeArgs } : {});
    await waitForRecordedPhase(w, tgtClient, 'streaming', 120_000);
    const m0 = await writeMarker(source);
    await waitForMarker(target, 'app', m0.id, 120_000);

    if (only.has('live')) {
      const full = await liveRun(ctx, w, tgtClient, null);
      out.commands.pgbench_live = full.command;
      out.figures.live = full.live;
      const steady = await liveRun(ctx, w, tgtClient, ctx.opts.liveRate);
      out.commands.pgbench_live_steady = steady.command;
      out.figures.liveSteady = steady.live;
      out.rssMb.live = Math.max(full.live.peakRssMb, steady.live.peakRssMb);
    }

    if (only.has('bigtxn')) {
      absorb(out, await measureBigTxn(ctx, w));
    }

    absorb(out, await verifyWalbridge(ctx));
  } catch (err) {
    out.errors.push(`live/bigtxn: ${(err as Error).message}`);
    say(`  failed: ${(err as Error).message}`);
    if (out.figures.live === undefined && only.has('live')) out.errors.push('live: not measured');
  } finally {
    if (w) {
      await stopWalbridge(ctx, w, 'live', out.profiles);
      out.rssMb.liveDaemonHwm = w.rss.hwmKb / 1024;
    }
    await tgtClient.end().catch(() => undefined);
  }
  return out;
}

/** pgbench for liveSeconds, at full rate or throttled to `rate` tps, while walbridge streams. */
async function liveRun(ctx: BenchContext, daemon: Walbridge, tgtClient: pg.Client, rate: number | null): Promise<{ live: LiveResults; command: string }> {
  const { source, target, opts, say } = ctx;
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
  const pb = await runPgbench(source, ctx.ranges, { seconds: opts.liveSeconds, clients: opts.clients, ...(rate === null ? {} : { rate }) });
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
  const live: LiveResults = {
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
  return { live, command: pb.command };
}
