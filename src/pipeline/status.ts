/**
 * What the running daemon knows about itself right now, shared by the pipeline, the monitor
 * and the HTTP server. Holds no connection details and no data rows.
 */
import type { Phase } from '../health/metrics.js';
import type { Lsn } from '../lsn.js';
import type { PipelineState, RecordedError, TableState } from '../state/store.js';
import { buildStatus, type LiveCopy, type SlotReport, type StatusReport } from '../status/report.js';

export interface LiveStatus {
  phase: Phase;
  /** Connected and copying or streaming. */
  ready: boolean;
  /** This instance holds the writer lock (the others stand by and only read). */
  writer: boolean;
  /** When this instance last took the writer lock. */
  writerSince: number | null;
  /** When the pipeline last became ready (ms since epoch). */
  readyAt: number | null;
  appliedLsn: Lsn | null;
  /** Microseconds since 2000-01-01 (pgoutput's clock) of the last applied commit. */
  appliedCommitTime: bigint | null;
  /** Copies running in this process, by `schema.table`. */
  copies: Map<string, LiveCopy>;
  /** Last state read from the target by the monitor. */
  recorded: { pipeline: PipelineState | null; tables: TableState[] } | null;
  /** Last slot facts read from the source by the monitor. */
  slot: SlotReport | null;
  lastError: RecordedError | null;
}

export function newLiveStatus(): LiveStatus {
  return {
    phase: 'preflight',
    ready: false,
    writer: false,
    writerSince: null,
    readyAt: null,
    appliedLsn: null,
    appliedCommitTime: null,
    copies: new Map(),
    recorded: null,
    slot: null,
    lastError: null,
  };
}

/** The pipeline is connected and copying or streaming, in `phase`. */
export function markReady(s: LiveStatus, phase: Phase, metrics: { setPhase(p: Phase): void }): void {
  s.phase = phase;
  metrics.setPhase(phase);
  if (!s.ready) s.readyAt = Date.now();
  s.ready = true;
  // Back to work: the last error stays visible, marked as resolved.
  if (s.lastError && !s.lastError.resolvedAt) s.lastError = { ...s.lastError, resolvedAt: new Date().toISOString() };
}

const PG_EPOCH_MS = 946_684_800_000;

export function commitTimeMs(us: bigint | null): number | null {
  return us === null ? null : Number(us / 1000n) + PG_EPOCH_MS;
}

export function reportOf(s: LiveStatus, applied: { transactions: number; changes: number } | null = null): StatusReport {
  return buildStatus({
    applied,
    phase: s.phase,
    pipeline: s.recorded?.pipeline ?? null,
    tables: s.recorded?.tables ?? [],
    slot: s.slot,
    liveCopies: s.copies,
    liveAppliedLsn: s.appliedLsn,
    liveAppliedCommitTimeMs: commitTimeMs(s.appliedCommitTime),
    liveError: s.lastError,
  });
}
