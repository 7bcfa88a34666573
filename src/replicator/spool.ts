/**
 * While the backfill copies, changes keep arriving. Holding them in the slot would make the
 * source retain WAL (Supabase invalidates a slot past max_slot_wal_keep_size), and holding
 * them in memory is unbounded, so they are written as they come into `walbridge.spool` on the
 * target, and acknowledged to the source once committed there (SpoolWriter, a sink of the live
 * stream). After the copy they are replayed, in arrival order, through the same loop, decoder
 * and applier as the live stream (SpoolFeed, a feed like the live stream).
 */
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import type { Metrics } from '../health/metrics.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { StateSql } from '../sql/state.js';
import { consumeChanges, ENDED, type ChangeFeed, type PgoutputBytes, type StreamSink } from './consume.js';
import { commitEndLsn, messageTag, TAG_BEGIN, TAG_COMMIT } from './pgoutput.js';
import { openWalStream, type XLogData } from './stream.js';

export interface SpoolOptions {
  /** Write buffered messages once they reach this many bytes (also bounds memory mid-transaction). */
  maxBufferBytes?: number;
  maxDelayMs?: number;
}

export class SpoolWriter implements StreamSink<XLogData> {
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
    /** The state whose spool this writes. */
    private readonly state: StateSql,
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

  /** The spool's writes are awaited one at a time: there is never one to gather behind. */
  readonly gathering = false;

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
   * but not counted: after a crash they are deleted and received again. Each flush is written
   * and committed before it returns (`_wait` makes no difference here).
   */
  async flush(_wait = true): Promise<Lsn> {
    const lines = this.lines;
    const bytes = this.bufferedBytes;
    const completeId = this.completeId;
    this.lines = [];
    this.bufferedBytes = 0;
    await this.client.query('BEGIN');
    try {
      if (lines.length > 0) {
        await pipeline(Readable.from(lines), this.client.query(copyFrom(this.state.COPY_INTO_SPOOL)));
      }
      await this.client.query(this.state.RECORD_SPOOLED, [formatLsn(this.completeLsn), this.completeId.toString()]);
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

/**
 * The change stream drained into the spool on the target, until `stop()`: the source never
 * holds WAL for walbridge while the copy runs, nor while the spool is applied afterwards.
 */
export interface Spooling {
  writer: SpoolWriter;
  /** Ends the drain after a final flush; resolves when it has (rejects if the stream broke). */
  stop(): Promise<void>;
  /** Settles when the drain ends by itself (a failure) or after stop(). */
  readonly done: Promise<void>;
}

export interface SpoolingOptions {
  sourceUrl: string;
  slotName: string;
  publicationName: string;
  /** Where the spool ends: the last complete transaction in it, and the id of its COMMIT row. */
  spooledLsn: Lsn;
  spoolCommittedId: bigint;
  /** A target session (session_replication_role = replica) for the spool's writes. */
  client: pg.Client;
  /** The state whose spool it is. */
  stateSql: StateSql;
  metrics: Metrics;
  log: Logger;
  signal: AbortSignal;
  /** Called when the drain fails by itself (the stream broke). */
  onFailure: () => void;
}

export async function startSpooling(opts: SpoolingOptions): Promise<Spooling> {
  const { client, stateSql: state } = opts;
  // Rows past the last complete transaction were cut off by a crash; it is sent again.
  await client.query(state.DISCARD_PARTIAL_SPOOL, [opts.spoolCommittedId.toString()]);
  const { rows } = await client.query<{ max_id: string }>(state.SPOOL_MAX_ID);
  const stream = await openWalStream(opts.sourceUrl, { slotName: opts.slotName, publicationName: opts.publicationName, startLsn: opts.spooledLsn }, opts.log);
  const writer = new SpoolWriter(client, state, { lsn: opts.spooledLsn, lastId: BigInt(rows[0]?.max_id ?? '0') }, opts.metrics);
  let stopping = false;
  const done = consumeChanges(stream, writer, { signal: opts.signal, idleFlushMs: 200, until: () => stopping })
    .catch((err: unknown) => {
      opts.onFailure();
      throw err;
    })
    .finally(() => stream.close());
  done.catch(() => {}); // observed by whoever awaits stop() or done
  return {
    writer,
    done,
    stop: async () => {
      stopping = true;
      await done;
    },
  };
}

/** Spool rows read ahead of the applier at most. */
const SPOOL_PAGE_ROWS = 2000;
/** The applier is this close behind the drain (rows it found waiting): time to stop the drain. */
const CLOSE_BEHIND_ROWS = 1000;

/**
 * The spool as a feed for the applier, in arrival order, a page at a time (it may be larger
 * than memory). Only rows of complete transactions committed by the drain are read. Once the
 * applier is close behind the drain, the drain is stopped (it flushes what it holds) and the
 * feed ends with the spool's last row; the live stream then takes over from the last applied
 * position.
 */
export class SpoolFeed implements ChangeFeed<PgoutputBytes> {
  private page: PgoutputBytes[] = [];
  private at = 0;
  /** The last spool row read. */
  private after = 0n;
  private draining = true;
  private confirmed: Lsn;

  constructor(
    private readonly client: pg.ClientBase,
    /** The state whose spool it reads. */
    private readonly state: StateSql,
    private readonly spooling: Spooling,
    start: Lsn,
  ) {
    this.confirmed = start;
  }

  poll(): PgoutputBytes | undefined {
    return this.at < this.page.length ? this.page[this.at++] : undefined;
  }

  /** Never TIMEOUT: rows are there to read, or the drain is stopped and the spool read to its end. */
  async next(): Promise<PgoutputBytes | typeof ENDED> {
    for (;;) {
      const m = this.poll();
      if (m !== undefined) return m;
      const upTo = this.spooling.writer.durableCompleteId;
      const { rows } = await this.client.query<{ id: string; data: Buffer }>(this.state.READ_SPOOL, [this.after.toString(), upTo.toString(), SPOOL_PAGE_ROWS]);
      this.page = rows.map((r) => ({ buf: r.data, payloadStart: 0, end: r.data.length }));
      this.at = 0;
      const last = rows[rows.length - 1];
      if (last) this.after = BigInt(last.id);
      if (this.draining && rows.length < CLOSE_BEHIND_ROWS) {
        // Close behind the drain: stop it (it flushes what it holds), then apply the rest.
        await this.spooling.stop();
        this.draining = false;
      } else if (rows.length === 0) {
        return ENDED;
      }
    }
  }

  /** Nothing to acknowledge: the drain acknowledges the source as it spools. */
  confirm(lsn: Lsn): void {
    if (lsn > this.confirmed) this.confirmed = lsn;
  }

  get confirmedLsn(): Lsn {
    return this.confirmed;
  }

  requestPosition(): void {}
}
