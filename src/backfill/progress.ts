/**
 * The backfill's progress, per table: the copies in flight (shown live on the status page),
 * the backfill metrics, and a log line per copy at a steady pace.
 */
import type { TablePlan } from '../catalog/tables.js';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { displayTable } from '../pg/ident.js';
import type { LiveCopy } from '../status/report.js';
import type { CopyProgress } from './copy.js';

interface TableProgress extends LiveCopy {
  table: string;
  estimated: number;
}

/** What a table's copy reports its progress to. */
export interface TableCopyProgress {
  readonly startedAt: number;
  readonly onProgress: (delta: CopyProgress) => void;
}

export class BackfillProgress {
  private readonly active = new Map<string, TableProgress>();

  constructor(
    private readonly log: Logger,
    private readonly metrics: Metrics,
    /** Copies in flight, shown on the status page and recorded by the monitor. */
    private readonly live: Map<string, LiveCopy>,
  ) {}

  /** Log every copy in flight every `intervalMs`; returns the function that stops it. */
  logEvery(intervalMs: number): () => void {
    // Progress at a steady pace, per table, with percent and ETA; never per row.
    const ticker = setInterval(() => {
      for (const p of this.active.values()) this.logOne(p);
    }, intervalMs);
    ticker.unref();
    return () => clearInterval(ticker);
  }

  /** The table's copy starts now: counted as copying, and shown live. */
  started(plan: TablePlan): TableCopyProgress {
    const table = displayTable(plan);
    this.metrics.backfillTables.dec({ state: 'pending' });
    this.metrics.backfillTables.inc({ state: 'copying' });
    this.metrics.backfillRowsEstimated.set({ table }, plan.source.estimatedRows);
    const progress: TableProgress = { table, estimated: plan.source.estimatedRows, rows: 0, bytes: 0, startedAt: Date.now() };
    this.active.set(table, progress);
    this.live.set(table, progress);
    return {
      startedAt: progress.startedAt,
      onProgress: (d) => {
        progress.rows += d.rows;
        progress.bytes += d.bytes;
        this.metrics.backfillRows.inc({ table }, d.rows);
        this.metrics.backfillBytes.inc({ table }, d.bytes);
      },
    };
  }

  /** The table's copy is in: counted as copied. */
  finished(table: string): void {
    this.forget(table);
    this.metrics.backfillTables.dec({ state: 'copying' });
    this.metrics.backfillTables.inc({ state: 'copied' });
  }

  /** The table's copy (or its start) failed: no longer shown. */
  dropped(table: string): void {
    this.forget(table);
  }

  private forget(table: string): void {
    this.active.delete(table);
    this.live.delete(table);
  }

  private logOne(p: TableProgress): void {
    const seconds = (Date.now() - p.startedAt) / 1000;
    const rate = seconds > 0 ? p.rows / seconds : 0;
    const pct = p.estimated > 0 ? Math.min(99.9, (100 * p.rows) / p.estimated) : null;
    const eta = rate > 0 && p.estimated > p.rows ? Math.round((p.estimated - p.rows) / rate) : null;
    this.log.info(
      { table: p.table, rows: p.rows, bytes: p.bytes, percent: pct === null ? null : Number(pct.toFixed(1)), rowsPerSec: Math.round(rate), etaSeconds: eta },
      'copying',
    );
  }
}
