/**
 * WAN: the same walbridge copy and drain with latency added between walbridge and the source
 * (tc netem in a network namespace, else a userspace delay proxy), against the same on loopback.
 */
import { outcome, type BenchContext, type CopyResults, type DrainResults, type Outcome, type WanResults } from '../context.js';
import { createTargetDb } from '../dataset.js';
import { startDelayProxy } from '../delay-proxy.js';
import { fmt } from '../report.js';
import { walbridgeEnv } from '../walbridge.js';
import { listenAlsoOn, setupWan, urlVia } from '../wan.js';
import { teardownWalbridge, walbridgeCopy, walbridgeDrain, writeBacklog, type WbCopy } from './steps.js';

/** The loopback references this run measured already (copy, drain), to compare with; else measured here. */
export interface LoopbackReference {
  copy?: CopyResults['walbridge'];
  drain?: DrainResults;
}

export async function measureWan(ctx: BenchContext, loopback: LoopbackReference): Promise<Outcome<{ wan: WanResults }>> {
  const { source, target, opts, say } = ctx;
  say(`wan: +${opts.wanRtt} ms round trip between walbridge and the source …`);
  const res: WanResults = { rttMs: opts.wanRtt };
  const rec = outcome({ wan: res });
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
    const loopCopy = loopback.copy;
    const loopDrain = loopback.drain?.walbridge;
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
        rec.commands.pgbench_backlog = backlog.command;
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
    if (loopDrain?.changesPerSec && loopback.drain) {
      res.loopbackDrainChangesPerSec = streamRate(loopback.drain.backlog.changes, loopDrain);
      res.loopbackDrainStartupSeconds = startup(loopDrain);
    }
    await createTargetDb(target, 'wan');
    const c = await walbridgeCopy(ctx, env, 'wan', 'wan-copy', { netns });
    await c.w.stop();
    res.copyMBps = rate(c);
    say(`  copy: ${res.copyMBps.toFixed(1)} MB/s with the added latency vs ${(res.loopbackCopyMBps ?? 0).toFixed(1)} MB/s on loopback`);
    const backlog = await writeBacklog(ctx);
    rec.commands.pgbench_backlog = backlog.command;
    const d = await walbridgeDrain(ctx, env, 'wan', backlog, 'wan-drain', { netns });
    await d.w.stop();
    res.drainChangesPerSec = streamRate(backlog.changes, d);
    res.drainStartupSeconds = startup(d);
    res.peakRssMb = Math.max(c.w.rss.peakMb(), d.w.rss.peakMb());
    rec.rssMb.wan = res.peakRssMb;
    say(`  drain: ${fmt.n(res.drainChangesPerSec)} changes/s with the added latency vs ${fmt.n(res.loopbackDrainChangesPerSec)} on loopback`);
    await teardownWalbridge(source, 'app');
  } catch (err) {
    res.error = (err as Error).message;
    rec.errors.push(`wan: ${res.error}`);
    say(`  failed: ${res.error}`);
  } finally {
    await teardown();
  }
  return rec;
}
