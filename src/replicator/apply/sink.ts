/**
 * The sink that applies changes, whichever feed they come from (the live stream or the
 * spool): it decodes each pgoutput message in place and hands it to the applier, and it is
 * the one place that tells the daemon's live status how far the target has applied.
 */
import type { Lsn } from '../../lsn.js';
import type { PgoutputBytes, StreamSink } from '../consume.js';
import { decodePgoutput } from '../pgoutput.js';
import type { Applier } from './applier.js';
import type { AppliedPosition } from './target-txn.js';

/** Where the applied position is shown (health/live-status.ts). */
export interface AppliedProgress {
  noteApplied(pos: AppliedPosition): void;
}

export class ApplySink implements StreamSink<PgoutputBytes> {
  constructor(
    private readonly applier: Applier,
    private readonly progress: AppliedProgress,
  ) {
    progress.noteApplied(applier.durablePosition);
  }

  handle(m: PgoutputBytes): Promise<void> | void {
    return this.applier.handle(decodePgoutput(m.buf, m.payloadStart, m.end), m);
  }

  noteIdlePosition(lsn: Lsn): void {
    this.applier.noteIdlePosition(lsn);
  }

  get flushDue(): boolean {
    return this.applier.batchDue;
  }

  get gathering(): boolean {
    return this.applier.gathering;
  }

  get idle(): boolean {
    return this.applier.idle;
  }

  get inTransaction(): boolean {
    return this.applier.inTransaction;
  }

  get durableLsn(): Lsn {
    return this.applier.durablePosition.lsn;
  }

  async flush(wait: boolean): Promise<Lsn> {
    return this.report(await this.applier.flush(wait));
  }

  async drain(): Promise<Lsn> {
    return this.report(await this.applier.drain());
  }

  async abandon(): Promise<void> {
    await this.applier.rollback();
  }

  private report(pos: AppliedPosition): Lsn {
    this.progress.noteApplied(pos);
    return pos.lsn;
  }
}
