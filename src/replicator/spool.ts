/**
 * While the backfill copies, changes keep arriving. Holding them in the slot would make the
 * source retain WAL (Supabase invalidates a slot past 512 MB), and holding them in memory is
 * unbounded, so they are written as they come into `walbridge.spool` on the target, and
 * acknowledged to the source once committed there. After the copy they are replayed, in
 * arrival order, through the same decoder and applier as the live stream.
 */
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Metrics } from '../health/metrics.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { READ_SPOOL, RECORD_SPOOLED, COPY_INTO_SPOOL } from '../sql/state.js';
import { commitEndLsn, messageTag, TAG_BEGIN, TAG_COMMIT } from './pgoutput.js';
import type { XLogData } from './stream.js';
import type { StreamSink } from './consume.js';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';

export interface SpoolOptions {
  /** Write buffered messages once they reach this many bytes (also bounds memory mid-transaction). */
  maxBufferBytes?: number;
  maxDelayMs?: number;
}

export class SpoolWriter implements StreamSink {
  private lines: string[] = [];
  private bufferedBytes = 0;
  private firstBufferedAt = 0;
  private nextId: bigint;
  private inTxn = false;
  /** End of the last complete transaction received, and the id of its COMMIT row. */
  private completeLsn: Lsn;
  private completeId: bigint;
  private durable: Lsn;
  private durableId: bigint;
  private readonly maxBytes: number;
  private readonly maxDelayMs: number;

  constructor(
    private readonly client: pg.Client,
    start: { lsn: Lsn; lastId: bigint },
    private readonly metrics: Metrics,
    opts: SpoolOptions = {},
  ) {
    this.nextId = start.lastId + 1n;
    this.completeLsn = start.lsn;
    this.completeId = start.lastId;
    this.durable = start.lsn;
    this.durableId = start.lastId;
    this.maxBytes = opts.maxBufferBytes ?? 4 * 1024 * 1024;
    this.maxDelayMs = opts.maxDelayMs ?? 500;
  }

  get durableLsn(): Lsn {
    return this.durable;
  }

  /** The last spool row of a complete transaction that is committed on the target. */
  get durableCompleteId(): bigint {
    return this.durableId;
  }

  get idle(): boolean {
    return !this.inTxn && this.lines.length === 0 && this.completeLsn <= this.durable;
  }

  get flushDue(): boolean {
    if (this.lines.length === 0) return !this.inTxn && this.completeLsn > this.durable;
    return this.bufferedBytes >= this.maxBytes || Date.now() - this.firstBufferedAt >= this.maxDelayMs;
  }

  /** The spool can be flushed mid-transaction: rows past the last COMMIT are not counted. */
  readonly inTransaction = false;

  handle(x: XLogData): void {
    this.add(x);
  }

  drain(): Promise<Lsn> {
    return this.flush();
  }

  async abandon(): Promise<void> {
    this.lines = [];
    this.bufferedBytes = 0;
  }

  add(x: XLogData): void {
    const tag = messageTag(x.payload);
    const id = this.nextId++;
    if (this.lines.length === 0) this.firstBufferedAt = Date.now();
    // COPY text format: bytea as \x hex, with the backslash itself escaped.
    const line = `${id}\t${formatLsn(x.walStart)}\t\\\\x${x.payload.toString('hex')}\n`;
    this.lines.push(line);
    this.bufferedBytes += line.length;
    if (tag === TAG_BEGIN) this.inTxn = true;
    if (tag === TAG_COMMIT) {
      this.inTxn = false;
      this.completeLsn = commitEndLsn(x.payload);
      this.completeId = id;
    }
  }

  /** A keepalive with no transaction open: nothing before `lsn` remains to be spooled. */
  noteIdlePosition(lsn: Lsn): void {
    if (!this.inTxn && this.lines.length === 0 && lsn > this.completeLsn) this.completeLsn = lsn;
  }

  /**
   * Write what is buffered and record the last complete transaction, in one target
   * transaction. Rows of a transaction still open are written too (memory stays bounded)
   * but not counted: after a crash they are deleted and received again.
   */
  /** Each flush is written and committed before it returns (`_wait` makes no difference here). */
  async flush(_wait = true): Promise<Lsn> {
    const lines = this.lines;
    const bytes = this.bufferedBytes;
    const completeId = this.completeId;
    this.lines = [];
    this.bufferedBytes = 0;
    await this.client.query('BEGIN');
    try {
      if (lines.length > 0) {
        await pipeline(Readable.from(lines), this.client.query(copyFrom(COPY_INTO_SPOOL)));
      }
      await this.client.query(RECORD_SPOOLED, [formatLsn(this.completeLsn), this.completeId.toString()]);
      await this.client.query('COMMIT');
    } catch (err) {
      await this.client.query('ROLLBACK').catch(() => {});
      throw err;
    }
    this.metrics.spooledBytes.inc(bytes);
    this.durable = this.completeLsn;
    this.durableId = completeId;
    return this.durable;
  }
}

/** Spool rows with ids in (after, upTo], in id order, a page at a time (the spool may be larger than memory). */
export async function* readSpool(client: pg.ClientBase, after: bigint, upTo: bigint, pageSize = 2000): AsyncGenerator<{ id: bigint; data: Buffer }> {
  let from = after;
  for (;;) {
    const { rows } = await client.query<{ id: string; data: Buffer }>(READ_SPOOL, [from.toString(), upTo.toString(), pageSize]);
    if (rows.length === 0) return;
    for (const r of rows) yield { id: BigInt(r.id), data: r.data };
    from = BigInt((rows[rows.length - 1] as { id: string }).id);
  }
}
