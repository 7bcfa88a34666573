/**
 * One big transaction: INSERT … SELECT generate_series of N rows on the source while walbridge
 * streams; the time from its commit until it is applied, and walbridge's peak RSS meanwhile.
 */
import { outcome, type BenchContext, type BigTxnResults, type Outcome } from '../context.js';
import { waitForMarker, writeMarker } from '../pgbench.js';
import { fmt } from '../report.js';
import { daemonTail, type Walbridge } from '../walbridge.js';

/** `w`: the daemon streaming from the app database (live.ts starts it). */
export async function measureBigTxn(ctx: BenchContext, w: Walbridge): Promise<Outcome<{ bigtxn: BigTxnResults }>> {
  const { source, target, opts, say } = ctx;
  say(`bigtxn: one transaction of ${fmt.n(opts.bigRows)} rows (INSERT … SELECT generate_series) while walbridge streams …`);
  const big: BigTxnResults = { rows: opts.bigRows, insertSeconds: 0 };
  const rec = outcome({ bigtxn: big });
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
      if (w.daemon.child.exitCode !== null || w.daemon.child.signalCode !== null) throw new Error(`walbridge exited:\n${daemonTail(w)}`);
    });
    big.applySeconds = (applied - committed) / 1000;
    big.peakRssMb = w.rss.peakMb(t0, applied + 200);
    const [r] = await target.query<{ n: string }>('SELECT count(*)::text AS n FROM public.bench_big');
    big.targetRows = Number(r?.n ?? 0);
    rec.rssMb.bigtxn = big.peakRssMb;
    say(`  insert ${fmt.s(big.insertSeconds)} on the source; applied ${fmt.s(big.applySeconds)} after its commit; peak RSS ${big.peakRssMb.toFixed(0)} MB; ${fmt.n(big.targetRows)} rows on the target`);
  } catch (err) {
    big.error = (err as Error).message;
    rec.errors.push(`bigtxn: ${big.error}`);
    say(`  failed: ${big.error}`);
  }
  return rec;
}
