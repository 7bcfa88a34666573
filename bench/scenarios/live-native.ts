/**
 * Live lag of a native subscription under the same full-rate pgbench run as walbridge's
 * (live.ts), run on its own after walbridge stopped.
 */
import { outcome, type BenchContext, type LiveNativeResults, type Outcome } from '../context.js';
import { LagSampler } from '../lag.js';
import { nativeEnable } from '../peers.js';
import { runPgbench, waitForMarker, writeMarker } from '../pgbench.js';
import { fmt } from '../report.js';
import { connect } from '../walbridge.js';
import { dropNativeDb } from './steps.js';

/** `nativeDb`: a native subscription that drained the backlog, disabled; dropped at the end. */
export async function measureLiveNative(ctx: BenchContext, nativeDb: string): Promise<Outcome<{ liveNative: LiveNativeResults }>> {
  const { source, target, opts, say } = ctx;
  say(`live: native subscription, pgbench at full rate (-c ${opts.clients}) for ${opts.liveSeconds} s …`);
  const [srcClient, tgtClient] = await Promise.all([connect(source, 'app'), connect(target, nativeDb)]);
  let liveNative: LiveNativeResults;
  try {
    await nativeEnable(target, nativeDb);
    const m0 = await writeMarker(source);
    await waitForMarker(target, nativeDb, m0.id, 600_000);
    // Native's applied position: its origin's remote_lsn, the end of the last commit applied.
    const lag = new LagSampler(srcClient, tgtClient, 'SELECT max(remote_lsn)::text AS lsn FROM pg_replication_origin_status');
    const from = Date.now();
    const pb = await runPgbench(source, ctx.ranges, { seconds: opts.liveSeconds, clients: opts.clients });
    const to = Date.now();
    const mk = await writeMarker(source);
    const caught = await waitForMarker(target, nativeDb, mk.id, 300_000);
    await lag.stop();
    liveNative = { pgbenchTps: pb.tps, lag: lag.stats(from + 1000, to), catchUpSeconds: (caught - mk.at) / 1000 };
    const st = liveNative.lag;
    say(`  pgbench ${pb.tps.toFixed(0)} tps; native lag p50 ${fmt.s(st.p50, 2)}, p99 ${fmt.s(st.p99, 2)}, max ${fmt.s(st.max, 2)}`);
  } catch (err) {
    liveNative = { pgbenchTps: 0, lag: { samples: 0, unresolved: 0, p50: NaN, p90: NaN, p99: NaN, max: NaN }, catchUpSeconds: NaN, error: (err as Error).message };
    say(`  native live failed: ${(err as Error).message}`);
  } finally {
    await Promise.all([srcClient.end().catch(() => undefined), tgtClient.end().catch(() => undefined)]);
    await dropNativeDb(ctx, nativeDb);
  }
  return outcome({ liveNative });
}
