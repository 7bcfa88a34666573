/**
 * What the running daemon knows about itself right now, shared by the pipeline, the monitor
 * and the HTTP server. Holds no connection details and no data rows.
 *
 * The phase is set here only (setPhase, markReady), so the status page and the
 * walbridge_phase metric can never disagree; the applied position is set here only
 * (noteApplied), by the one sink that applies changes (replicator/apply-sink.ts).
 */
import type { Lsn } from '../lsn.js';
import { pgMicrosToMs, type PgMicros } from '../pg/epoch.js';
import type { PipelineState, RecordedError, TableState } from '../state/store.js';
import type { Phase } from '../status/phase.js';
import { buildStatus, type FenceReport, type LiveCopy, type SlotReport, type StatusReport } from '../status/report.js';

/** Where the metric of the phase goes (health/metrics.ts). */
export interface PhaseGauge {
  setPhase(p: Phase): void;
}

export class LiveStatus {
  private current: Phase = 'preflight';
  /** Connected and copying or streaming. */
  ready = false;
  /** This instance holds the writer lock (the others stand by and only read). */
  writer = false;
  /** When this instance last took the writer lock. */
  writerSince: number | null = null;
  /** When the pipeline last became ready (ms since epoch). */
  readyAt: number | null = null;
  appliedLsn: Lsn | null = null;
  /** The last applied commit's time, on PostgreSQL's clock. */
  appliedCommitTime: PgMicros | null = null;
  /** Copies running in this process, by `schema.table`. */
  readonly copies = new Map<string, LiveCopy>();
  /** Last state read from the target by the monitor. */
  recorded: { pipeline: PipelineState | null; tables: TableState[] } | null = null;
  /** Last slot facts read from the source by the monitor. */
  slot: SlotReport | null = null;
  /** Fences on either database, as the monitor last read them. */
  fences: FenceReport[] = [];
  lastError: RecordedError | null = null;
  /** Tables created on the source in a selected schema that the migration does not carry, and why (tables/changer.ts). */
  newTables: { table: string; reason: string }[] = [];

  constructor(
    private readonly gauge: PhaseGauge,
    /** This migration's name (its slot), to tell its own fence from another's. */
    private readonly migration?: string,
    /** Declared conversions (WALBRIDGE_CONVERT), shown with their tables. */
    private readonly conversions?: Map<string, { spec: string }>,
  ) {
    gauge.setPhase(this.current);
  }

  get phase(): Phase {
    return this.current;
  }

  setPhase(phase: Phase): void {
    this.current = phase;
    this.gauge.setPhase(phase);
  }

  /** The pipeline is connected and copying or streaming, in `phase`. */
  markReady(phase: Phase): void {
    this.setPhase(phase);
    if (!this.ready) this.readyAt = Date.now();
    this.ready = true;
    // Back to work: the last error stays visible, marked as resolved.
    if (this.lastError && !this.lastError.resolvedAt) this.lastError = { ...this.lastError, resolvedAt: new Date().toISOString() };
  }

  /** Changes are committed on the target up to `lsn` (a commit time of null: the position moved with no commit). */
  noteApplied(pos: { lsn: Lsn; commitTime: PgMicros | null }): void {
    this.appliedLsn = pos.lsn;
    if (pos.commitTime !== null) this.appliedCommitTime = pos.commitTime;
  }

  report(applied: { transactions: number; changes: number } | null = null): StatusReport {
    return buildStatus({
      applied,
      phase: this.current,
      pipeline: this.recorded?.pipeline ?? null,
      tables: this.recorded?.tables ?? [],
      slot: this.slot,
      liveCopies: this.copies,
      liveAppliedLsn: this.appliedLsn,
      liveAppliedCommitTimeMs: pgMicrosToMs(this.appliedCommitTime),
      liveError: this.lastError,
      fences: this.fences,
      newTables: this.newTables,
      ...(this.migration ? { migration: this.migration } : {}),
      ...(this.conversions ? { conversions: this.conversions } : {}),
    });
  }
}
