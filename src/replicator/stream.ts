/**
 * The change stream from the source's slot (START_REPLICATION over the CopyBoth protocol).
 *
 * Why not pg-logical-replication: its periodic timer acknowledges the last *received* LSN
 * (losing data on a crash), its parser runs pg's global type parsers (timestamps through a
 * JS Date, numerics through strings that are later rounded), it turns unchanged TOAST
 * values into `undefined`, and it consumes `copyData` events without ever pausing the
 * socket. Here, pg-copy-streams' copy-both Duplex gives real backpressure (a slow apply
 * pauses the socket, which pauses the walsender), frames are kept whole, and the only LSN
 * ever acknowledged is the one the caller says is durable.
 */
import type { Duplex } from 'node:stream';
import { both as copyBoth, type CopyBothQueryStream } from 'pg-copy-streams';
import { quoteIdent, quoteLiteral } from '../pg/ident.js';
import { formatLsn, type Lsn } from '../lsn.js';
import type { ReplicationConnection } from '../pg/replication.js';

/** Where the pgoutput message starts in an XLogData message ('w', walStart, walEnd, sendTime). */
export const PAYLOAD_OFFSET = 25;

/**
 * WAL data: one pgoutput message and the WAL position it came from. Fields are read from the
 * message when asked (most messages are only decoded): no BigInt or buffer view is made for a
 * message that does not need one.
 */
export class XLogData {
  readonly kind = 'xlog';
  constructor(
    /** The whole CopyData message; the pgoutput message starts at PAYLOAD_OFFSET. */
    readonly chunk: Buffer,
  ) {}

  get walStart(): Lsn {
    return this.chunk.readBigUInt64BE(1);
  }

  get walEnd(): Lsn {
    return this.chunk.readBigUInt64BE(9);
  }

  /** The pgoutput message, as a view. */
  get payload(): Buffer {
    return this.chunk.subarray(PAYLOAD_OFFSET);
  }
}

/** The server's heartbeat: everything up to `walEnd` has been sent. */
export interface Keepalive {
  kind: 'keepalive';
  walEnd: Lsn;
  replyRequested: boolean;
}

export type StreamMessage = XLogData | Keepalive;
export const TIMEOUT = Symbol('timeout');
export const ENDED = Symbol('ended');

const PG_EPOCH_MS = 946_684_800_000n;

export interface WalStreamOptions {
  slotName: string;
  publicationName: string;
  startLsn: Lsn;
  /** Status updates are sent at least this often, so wal_sender_timeout never fires while we apply. */
  statusIntervalMs?: number;
}

export class WalStream {
  private readonly stream: Duplex;
  private ended = false;
  private flushed: Lsn;
  private received: Lsn;
  /** The last XLogData message, whose end position `received` has not taken in yet. */
  private lastData: Buffer | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  private failure: Error | null = null;

  private constructor(
    private readonly conn: ReplicationConnection,
    opts: WalStreamOptions,
  ) {
    this.flushed = opts.startLsn;
    this.received = opts.startLsn;
    const sql =
      `START_REPLICATION SLOT ${opts.slotName} LOGICAL ${formatLsn(opts.startLsn)} ` +
      `(proto_version '1', publication_names ${quoteLiteral(quoteIdent(opts.publicationName))})`;
    // alignOnCopyDataFrame + object mode: one chunk is exactly one CopyData message.
    this.stream = copyBoth(sql, { alignOnCopyDataFrame: true, readableObjectMode: true, readableHighWaterMark: 512 });
    this.stream.on('error', (err: Error) => {
      this.failure ??= err;
    });
    conn.client.query(this.stream as CopyBothQueryStream);
    this.stream.on('end', () => {
      this.ended = true;
    });
    this.timer = setInterval(() => this.sendStatus(false), opts.statusIntervalMs ?? 10_000);
    this.timer.unref();
  }

  static start(conn: ReplicationConnection, opts: WalStreamOptions): WalStream {
    return new WalStream(conn, opts);
  }

  /** The highest LSN acknowledged to the source as durable. */
  get flushedLsn(): Lsn {
    return this.flushed;
  }

  /**
   * The next message, or TIMEOUT after `timeoutMs` without one, or ENDED. Messages already
   * buffered are returned at once, without a timer or a promise race per message: at tens of
   * thousands of changes a second that overhead is what would limit the apply.
   */
  async next(timeoutMs: number): Promise<StreamMessage | typeof TIMEOUT | typeof ENDED> {
    for (;;) {
      if (this.failure) throw this.failure;
      const chunk = this.stream.read() as Buffer | null;
      if (chunk !== null) return this.decode(chunk);
      if (this.ended) return ENDED;
      const woke = await new Promise<boolean>((resolve) => {
        const done = (v: boolean) => {
          clearTimeout(timer);
          this.stream.off('readable', onReadable);
          this.stream.off('end', onReadable);
          this.stream.off('error', onReadable);
          resolve(v);
        };
        const onReadable = () => done(true);
        const timer = setTimeout(() => done(false), timeoutMs);
        this.stream.on('readable', onReadable);
        this.stream.on('end', onReadable);
        this.stream.on('error', onReadable);
      });
      if (!woke) return TIMEOUT;
    }
  }

  private decode(chunk: Buffer): StreamMessage {
    const tag = chunk[0];
    if (tag === 0x77 /* w */) {
      this.lastData = chunk;
      return new XLogData(chunk);
    }
    if (tag === 0x6b /* k */) {
      const walEnd = chunk.readBigUInt64BE(1);
      const replyRequested = chunk[17] === 1;
      if (replyRequested) this.sendStatus(false);
      return { kind: 'keepalive', walEnd, replyRequested };
    }
    throw new Error(`unexpected replication message type 0x${(tag ?? 0).toString(16)}`);
  }

  /**
   * Report `lsn` as durable on the target. Only the caller knows that: nothing else in this
   * class ever moves the flush position, so a crash can never skip an unapplied change.
   */
  confirm(lsn: Lsn): void {
    if (lsn > this.flushed) {
      this.flushed = lsn;
      this.sendStatus(false);
    }
  }

  /** Ask the server for a keepalive (used to learn its position quickly). */
  requestKeepalive(): void {
    this.sendStatus(true);
  }

  private sendStatus(replyRequested: boolean): void {
    if (this.closed || this.failure || this.stream.destroyed || this.stream.writableEnded) return;
    if (this.lastData !== null) {
      // WAL positions only grow: the last message received holds the highest.
      const walEnd = this.lastData.readBigUInt64BE(9);
      if (walEnd > this.received) this.received = walEnd;
      this.lastData = null;
    }
    const buf = Buffer.alloc(34);
    buf[0] = 0x72; // 'r'
    const written = this.received > this.flushed ? this.received : this.flushed;
    buf.writeBigUInt64BE(written, 1);
    buf.writeBigUInt64BE(this.flushed, 9);
    buf.writeBigUInt64BE(this.flushed, 17);
    buf.writeBigUInt64BE((BigInt(Date.now()) - PG_EPOCH_MS) * 1000n, 25);
    buf[33] = replyRequested ? 1 : 0;
    this.stream.write(buf);
  }

  /** Send a last status with the durable position and close the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.sendStatus(false);
    this.closed = true;
    clearInterval(this.timer);
    await new Promise<void>((resolve) => {
      // Give the status message a moment to leave the socket before the Terminate message.
      setImmediate(resolve);
    });
    await this.conn.close();
  }
}
