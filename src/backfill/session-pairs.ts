/**
 * The copy's source/target session pairs, opened on demand and kept from one copy to the next:
 * a new connection costs the source several round trips (TCP, TLS, SCRAM), which through 30 ms
 * of latency made a fifth of the copy.
 */
import type pg from 'pg';
import { openSourceReader, openTargetWriter, type TargetWriterSettings } from '../pg/sessions.js';
import type { BackfillRun } from './run.js';

const APPLICATION_NAME = 'walbridge copy';

export interface SessionPair {
  source: pg.Client;
  target: pg.Client;
}

export class SessionPairs {
  /** Every session open, lent or idle: what closeAll() closes. */
  private readonly open = new Set<pg.Client>();
  private readonly idle: SessionPair[] = [];
  /** The run is over: a pair released from now on (by a helper still finishing) is closed, not kept. */
  private ended = false;

  constructor(
    private readonly sourceUrl: string,
    private readonly targetUrl: string,
    private readonly writer: TargetWriterSettings,
    private readonly run: BackfillRun,
  ) {}

  /**
   * Run `work` on a pair: kept afterwards if it returns, closed if it throws. A failure (to
   * open the pair too) goes to `failed` before the pair is closed, so that the run stops
   * everything at once, not after this pair's goodbye.
   */
  async withPair(work: (pair: SessionPair) => Promise<void>, failed: (err: unknown) => void): Promise<void> {
    let pair: SessionPair | null = null;
    let clean = false;
    try {
      pair = await this.take();
      await work(pair);
      clean = true;
    } catch (err) {
      failed(err);
    } finally {
      if (pair) await this.release(pair, clean);
    }
  }

  /** Every session, lent or idle, closed at once without waiting: the run has stopped. */
  closeAll(): void {
    for (const c of this.open) void c.end().catch(() => {});
  }

  /** The pairs kept for a next copy closed, at the end of the run. */
  async closeIdle(): Promise<void> {
    this.ended = true;
    await Promise.all(this.idle.splice(0).map((pair) => this.release(pair, false)));
  }

  private async take(): Promise<SessionPair> {
    const idle = this.idle.pop();
    if (idle) return idle;
    const source = await openSourceReader(this.sourceUrl, APPLICATION_NAME);
    this.open.add(source);
    try {
      const target = await openTargetWriter(this.targetUrl, APPLICATION_NAME, this.writer);
      this.open.add(target);
      return { source, target };
    } catch (err) {
      this.open.delete(source);
      await source.end().catch(() => {});
      throw err;
    }
  }

  /** Kept when both sessions have committed what they did (clean); closed after anything else. */
  private async release(pair: SessionPair, clean: boolean): Promise<void> {
    if (clean && !this.run.stopped && !this.ended) {
      this.idle.push(pair);
      return;
    }
    for (const c of [pair.source, pair.target]) {
      this.open.delete(c);
      await c.end().catch(() => {});
    }
  }
}
