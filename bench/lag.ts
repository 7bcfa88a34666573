/**
 * Replication lag in seconds, measured from outside: the source's WAL position is recorded with
 * a timestamp every 100 ms, the target's applied position is polled every 50 ms, and each source
 * sample's lag is the time until the target's applied position passed it.
 */
import type pg from 'pg';
import { sleep } from './proc.js';

export function parseLsn(text: string): bigint {
  const [hi, lo] = text.split('/');
  return (BigInt(`0x${hi ?? '0'}`) << 32n) + BigInt(`0x${lo ?? '0'}`);
}

interface Sample {
  t: number;
  lsn: bigint;
}

export interface LagStats {
  samples: number;
  unresolved: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i] as number;
}

export class LagSampler {
  private readonly src: Sample[] = [];
  private readonly tgt: Sample[] = [];
  private running = true;
  private readonly loops: Promise<void>[];

  /**
   * @param source a connection to the source
   * @param target a connection to the target
   * @param appliedSql a query returning one row with column `lsn` (text): the target's applied position
   */
  constructor(
    source: pg.Client,
    target: pg.Client,
    appliedSql: string,
    opts: { sourceMs?: number; targetMs?: number } = {},
  ) {
    this.loops = [
      this.loop(source, 'SELECT pg_current_wal_lsn()::text AS lsn', this.src, opts.sourceMs ?? 100),
      this.loop(target, appliedSql, this.tgt, opts.targetMs ?? 50),
    ];
  }

  private async loop(c: pg.Client, sql: string, into: Sample[], everyMs: number): Promise<void> {
    let next = Date.now();
    while (this.running) {
      const t0 = Date.now();
      try {
        const r = await c.query<{ lsn: string | null }>(sql);
        const lsn = r.rows[0]?.lsn;
        if (lsn) into.push({ t: (t0 + Date.now()) / 2, lsn: parseLsn(lsn) });
      } catch {
        // a missed sample
      }
      next += everyMs;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Lag of every source sample taken in [from, to]. */
  stats(from: number, to: number): LagStats {
    const lags: number[] = [];
    let unresolved = 0;
    let j = 0;
    for (const s of this.src) {
      if (s.t < from || s.t > to) continue;
      while (j < this.tgt.length && (this.tgt[j] as Sample).t < s.t) j++;
      let k = j;
      while (k < this.tgt.length && (this.tgt[k] as Sample).lsn < s.lsn) k++;
      const hit = this.tgt[k];
      if (hit) lags.push((hit.t - s.t) / 1000);
      else unresolved++;
    }
    lags.sort((a, b) => a - b);
    return {
      samples: lags.length,
      unresolved,
      p50: quantile(lags, 0.5),
      p90: quantile(lags, 0.9),
      p99: quantile(lags, 0.99),
      max: lags.length > 0 ? (lags[lags.length - 1] as number) : Number.NaN,
    };
  }
}
