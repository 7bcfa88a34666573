/**
 * What the running pipeline knows about itself right now, shared with the HTTP server
 * (status page, readiness) and the lag monitor. Holds no connection details.
 */
import type { Phase } from '../health/metrics.js';
import type { Lsn } from '../lsn.js';

export interface LiveStatus {
  phase: Phase;
  /** Connected and copying or streaming. */
  ready: boolean;
  appliedLsn: Lsn | null;
  appliedCommitTime: bigint | null;
  sourceLsn: Lsn | null;
  retainedWalBytes: number | null;
  slotActive: boolean | null;
  lastError: { kind: string; message: string; hint: string | undefined; at: string } | null;
}

export function newLiveStatus(): LiveStatus {
  return {
    phase: 'preflight',
    ready: false,
    appliedLsn: null,
    appliedCommitTime: null,
    sourceLsn: null,
    retainedWalBytes: null,
    slotActive: null,
    lastError: null,
  };
}
