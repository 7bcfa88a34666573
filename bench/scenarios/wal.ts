/**
 * Retained WAL during the copy: how much WAL walbridge's slot holds back on the source while it
 * copies a big table under a steady write load, and until the spool is applied.
 */
import { outcome, type BenchContext, type Outcome, type WalResults } from '../context.js';
import { fmt } from '../report.js';
import { measureRetainedWalDuringCopy, prepareRetainedWal } from '../retained-wal.js';
import { nodeArgsFor } from './steps.js';

export async function measureWal(ctx: BenchContext): Promise<Outcome<{ wal: WalResults }>> {
  const { source, target, say } = ctx;
  const rssMb: Record<string, number> = {};
  const errors: string[] = [];
  let wal: WalResults;
  // A copy of well over 20 s: walbridge copies one plain table at roughly 50-60 MB/s here.
  const tableMB = ctx.opts.walTableMB;
  const loadMBps = ctx.quick ? 3 : 10;
  say(`wal: retained WAL while walbridge copies a ${tableMB} MB table under a steady ${loadMBps} MB/s WAL load …`);
  try {
    const tableBytes = await prepareRetainedWal(source, target, 'walcopy', tableMB);
    await source.query('CHECKPOINT', [], 'postgres');
    const r = await measureRetainedWalDuringCopy({ source, target, database: 'walcopy', loadMBps, ...(ctx.profileDir ? { nodeArgs: nodeArgsFor(ctx, 'wal') ?? [] } : {}) });
    const { samples, ...rest } = r;
    wal = { ...rest, tableBytes, loadMBps, samples: samples.length };
    rssMb.wal = r.peakRssMb;
    say(
      `  copy ${fmt.s(r.copySeconds)} (${r.tables.map((t) => `${t.table} ${fmt.s(t.seconds)}`).join(', ')}); the load wrote ${fmt.mb(r.loadWalBytes)} of WAL meanwhile; ` +
        `slot retained at most ${fmt.mb(r.maxRetainedBytes)} during the copy, ${fmt.mb(r.maxRetainedUntilStreamingBytes)} until streaming; ` +
        `spool applied ${r.catchUpSeconds === null ? 'NOT within 5 min' : `${fmt.s(r.catchUpSeconds)}`} after the copy`,
    );
  } catch (err) {
    wal = { error: (err as Error).message } as WalResults;
    errors.push(`wal: ${(err as Error).message}`);
    say(`  failed: ${(err as Error).message}`);
  }
  for (const c of [source, target]) await c.query('DROP DATABASE IF EXISTS walcopy WITH (FORCE)', [], 'postgres').catch(() => undefined);
  return { ...outcome({ wal }), rssMb, errors };
}
