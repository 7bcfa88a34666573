/**
 * Copies in parts: how a large table splits, and the spare session pairs that copy the parts
 * side by side.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import type { Logger } from '../log.js';
import { quoteTable } from '../pg/ident.js';
import { TABLE_PARTS } from '../sql/source.js';
import { copyPart, importSnapshot, lockForCopy, type CopyOptions, type CopyPart, type CopyProgress } from './copy.js';
import type { BackfillRun } from './run.js';
import type { SessionPairs } from './session-pairs.js';

/** What TABLE_PARTS tells of a table. */
export interface TableShape {
  /** With TOAST: what the copy moves. */
  bytes: number;
  blocks: number;
  tidRangeScan: boolean;
  /** Leaf partitions (quoted names), largest first. */
  leaves: string[];
}

/**
 * The parts of a table large enough to split (block ranges of an ordinary table, leaves of
 * a partitioned one), or null to copy it in one piece. More parts than sessions, so that
 * sessions lent from tables that finished early find work.
 */
export function splitTable(shape: TableShape, partitioned: boolean, jobs: number, splitBytes: number): CopyPart[] | null {
  const worth = Math.floor(shape.bytes / Math.max(1, splitBytes));
  if (partitioned) return shape.leaves.length >= 2 && worth >= 2 ? shape.leaves.map((quotedName) => ({ kind: 'leaf', quotedName })) : null;
  const n = Math.min(2 * jobs, worth);
  if (!shape.tidRangeScan || !(n >= 2)) return null;
  const per = Math.ceil(shape.blocks / n);
  return Array.from({ length: n }, (_, i) => ({ kind: 'blocks', from: i * per, to: i === n - 1 ? null : (i + 1) * per }));
}

/** What a waiting part is worth to a spare session: the bytes of parts its table still has waiting. */
interface PartsWaiting {
  queue: readonly unknown[];
  /** Bytes per part (an estimate, to pick whom to help). */
  partBytes: number;
}

/** The table whose parts still waiting hold the most bytes, or null when no part waits. */
export function mostBytesWaiting<J extends PartsWaiting>(jobs: Iterable<J>): J | null {
  let best: J | null = null;
  for (const j of jobs) if (j.queue.length > 0 && (best === null || j.queue.length * j.partBytes > best.queue.length * best.partBytes)) best = j;
  return best;
}

interface PartsJob extends PartsWaiting {
  plan: TablePlan;
  queue: CopyPart[];
  total: CopyProgress;
  onProgress: (d: CopyProgress) => void;
  /** Parts being copied by helpers right now. */
  inFlight: number;
  idle: (() => void) | null;
}

export interface PartsSchedulerOptions {
  /** Session pairs of the whole backfill: a table's own, and up to jobs - 1 spare ones. */
  jobs: number;
  splitBytes: number;
  /** The shared snapshot every part is read under. */
  snapshotName: string;
  copyOptions: Omit<CopyOptions, 'onProgress'>;
}

/**
 * Copies in parts in progress, and the extra session pairs that help them: at most jobs - 1
 * at a time, each taking the next part of whichever table has the most bytes of parts still
 * waiting (any table: they all read under the same snapshot), part after part, so the largest
 * table does not end up copying alone on one session at the end.
 */
export class PartsScheduler {
  private readonly jobs = new Set<PartsJob>();
  private spareSessions: number;
  private helpers = 0;

  constructor(
    private readonly opts: PartsSchedulerOptions,
    private readonly sessions: SessionPairs,
    private readonly run: BackfillRun,
  ) {
    this.spareSessions = Math.max(0, opts.jobs - 1);
  }

  /** The parts `plan` splits into (see splitTable), or null to copy it in one piece. */
  async planParts(source: pg.ClientBase, plan: TablePlan): Promise<CopyPart[] | null> {
    if (this.opts.jobs < 2) return null;
    const { rows } = await source.query<{ bytes: string; blocks: string; tid_range_scan: boolean; leaves: string[] }>(TABLE_PARTS, [quoteTable(plan)]);
    const t = rows[0];
    if (!t) return null;
    const shape = { bytes: Number(t.bytes), blocks: Number(t.blocks), tidRangeScan: t.tid_range_scan, leaves: t.leaves };
    return splitTable(shape, plan.source.kind === 'p', this.opts.jobs, this.opts.splitBytes);
  }

  /**
   * Copy a table's parts side by side: on the table's own session pair (whose source
   * transaction holds the table's lock throughout) and on pairs lent from the shared pool
   * (lendSessions), all under the same snapshot. Each part commits on its own; returns what
   * they moved once all are in.
   */
  async copyParts(
    source: pg.ClientBase,
    target: pg.ClientBase,
    plan: TablePlan,
    parts: CopyPart[],
    onProgress: (d: CopyProgress) => void,
    tlog: Logger,
  ): Promise<CopyProgress> {
    const job: PartsJob = {
      plan,
      queue: [...parts],
      partBytes: plan.source.bytes / Math.max(1, parts.length),
      total: { rows: 0, bytes: 0 },
      onProgress,
      inFlight: 0,
      idle: null,
    };
    this.jobs.add(job);
    try {
      const before = this.helpers;
      this.lendSessions();
      tlog.info({ parts: parts.length, helpers: this.helpers - before, by: parts[0]?.kind === 'leaf' ? 'partition' : 'block range' }, 'copying in parts side by side');
      for (let part = job.queue.shift(); part !== undefined && !this.run.failed; part = job.queue.shift()) await this.copyOnePart(job, part, source, target);
      // The last parts may still be copying on helpers' sessions.
      if (job.inFlight > 0 && !this.run.failed) await new Promise<void>((resolve) => (job.idle = resolve));
    } finally {
      this.jobs.delete(job);
    }
    this.run.throwIfFailed();
    return job.total;
  }

  /** Start helpers while session pairs are spare and parts wait for more than the helpers running. */
  private lendSessions(): void {
    while (this.spareSessions > 0 && !this.run.stopped) {
      let waiting = 0;
      for (const j of this.jobs) waiting += j.queue.length;
      if (waiting <= this.helpers) return;
      this.spareSessions--;
      this.helpers++;
      void this.help().finally(() => {
        this.spareSessions++;
        this.helpers--;
        this.lendSessions();
      });
    }
  }

  /** A session pair of its own under the shared snapshot, copying parts until none wait. */
  private async help(): Promise<void> {
    await this.sessions.withPair(
      async ({ source: s, target: t }) => {
        await importSnapshot(s, this.opts.snapshotName);
        const locked = new Set<PartsJob>();
        for (let job = mostBytesWaiting(this.jobs); job !== null && !this.run.failed; job = mostBytesWaiting(this.jobs)) {
          if (!locked.has(job)) {
            await lockForCopy(s, job.plan);
            locked.add(job);
          }
          const part = job.queue.shift();
          if (part === undefined) continue;
          job.inFlight++;
          try {
            await this.copyOnePart(job, part, s, t);
          } finally {
            job.inFlight--;
            if (job.inFlight === 0 && job.queue.length === 0) job.idle?.();
          }
        }
        await s.query('COMMIT');
      },
      (err) => {
        // As any copy failing: the backfill stops (every session closed) and is run again.
        this.run.fail(err);
        for (const j of this.jobs) j.idle?.();
      },
    );
  }

  private async copyOnePart(job: PartsJob, part: CopyPart, s: pg.ClientBase, t: pg.ClientBase): Promise<void> {
    const done = await copyPart(s, t, job.plan, part, { ...this.opts.copyOptions, onProgress: job.onProgress });
    job.total.rows += done.rows;
    job.total.bytes += done.bytes;
  }
}
