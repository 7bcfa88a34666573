/**
 * The change stream from the source's slot (START_REPLICATION over the CopyBoth protocol).
 *
 * Why not pg-logical-replication: its periodic timer acknowledges the last *received* LSN
 * (losing data on a crash), its parser runs pg's global type parsers (timestamps through a
 * JS Date, numerics through strings that are later rounded), it turns unchanged TOAST
 * values into `undefined`, and it consumes `copyData` events without ever pausing the
 * socket. Nor pg-copy-streams' copy-both: it slices every message out of the socket's buffer
 * and pushes each through a stream, which at tens of thousands of changes a second was a good
 * part of the daemon's CPU. Here the socket is read directly (pg/raw-query.ts): each message is
 * a position in the chunk it arrived in (decoded in place, see pgoutput.ts), a bounded queue of
 * them gives real backpressure (a slow apply stops the reading, which stops the walsender),
 * and the only LSN ever acknowledged is the one the caller says is durable.
 */
import type pg from 'pg';
import { WalbridgeError } from '../errors.js';
import type { Logger } from '../log.js';
import { formatLsn, type Lsn } from '../lsn.js';
import { pgMicrosNow } from '../pg/epoch.js';
import { quoteIdent, quoteLiteral } from '../pg/ident.js';
import { INTERSPERSED, RawQuery, SocketReader } from '../pg/raw-query.js';
import { ReplicationConnection } from '../pg/replication.js';
import { ENDED, TIMEOUT, type ChangeFeed, type Keepalive, type PgoutputBytes } from './consume.js';

/** Where the pgoutput message starts in an XLogData message ('w', walStart, walEnd, sendTime). */
export const PAYLOAD_OFFSET = 25;

/**
 * WAL data: one pgoutput message and the WAL position it came from, at [start, end) of `buf`
 * (the socket chunk it arrived in). Fields are read when asked (most messages are only
 * decoded): no BigInt or buffer view is made for a message that does not need one.
 */
export class XLogData implements PgoutputBytes {
  readonly kind = 'xlog';
  constructor(
    readonly buf: Buffer,
    /** Where the XLogData message ('w', walStart, walEnd, sendTime, pgoutput message) starts and ends. */
    readonly start: number,
    readonly end: number,
  ) {}

  get walStart(): Lsn {
    return this.buf.readBigUInt64BE(this.start + 1);
  }

  get walEnd(): Lsn {
    return this.buf.readBigUInt64BE(this.start + 9);
  }

  /** Where the pgoutput message starts in `buf`. */
  get payloadStart(): number {
    return this.start + PAYLOAD_OFFSET;
  }

  /** The pgoutput message, as a view. */
  get payload(): Buffer {
    return this.buf.subarray(this.start + PAYLOAD_OFFSET, this.end);
  }
}

export type StreamMessage = XLogData | Keepalive;

export interface WalStreamOptions {
  slotName: string;
  publicationName: string;
  startLsn: Lsn;
  /** Status updates are sent at least this often, so wal_sender_timeout never fires while we apply. */
  statusIntervalMs?: number;
}

const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const COPY_BOTH_RESPONSE = 0x57; // 'W'
/** Messages read ahead of the consumer at most; the socket is not read beyond them. */
const QUEUE_HIGH = 1024;
const QUEUE_LOW = 256;

/**
 * START_REPLICATION, its CopyData messages read straight off the socket into a queue of
 * positions. pg reads anything else (an error, the end) and tells this query.
 */
class Replication extends RawQuery {
  reader: SocketReader | null = null;
  readonly queue: StreamMessage[] = [];
  /** Index of the next message to hand out (the queue is compacted now and then). */
  head = 0;
  ended = false;
  /** A CopyData message that spans socket chunks: its parts so far, and its whole length. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private pendingTotal = 0;
  /** The start of a message header cut off at the end of the last chunk. */
  private carry: Buffer | null = null;
  private wake: (() => void) | null = null;

  constructor(
    text: string,
    private readonly onMessage: (m: StreamMessage) => void,
  ) {
    super(text);
  }

  submit(connection: pg.Connection): void {
    this.connection = connection;
    this.reader = new SocketReader(connection.stream, (chunk) => this.parse(chunk));
    connection.stream.once('close', () => this.notify());
    connection.query(this.text);
  }

  get socket(): pg.Connection['stream'] | null {
    return this.connection?.stream ?? null;
  }

  get size(): number {
    return this.queue.length - this.head;
  }

  shift(): StreamMessage | undefined {
    if (this.head >= this.queue.length) return undefined;
    const m = this.queue[this.head++];
    if (this.head >= 4096 || this.head === this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    if (this.size < QUEUE_LOW) this.reader?.resume();
    return m;
  }

  /** Resolves when a message arrives, the stream ends or fails, or after `ms`. */
  waitFor(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = null;
        resolve();
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
    });
  }

  private notify(): void {
    this.wake?.();
  }

  protected override onFailure(): void {
    this.notify();
  }

  override handleReadyForQuery(): void {
    this.ended = true;
    super.handleReadyForQuery();
    this.notify();
  }

  private push(buf: Buffer, start: number, end: number): void {
    const m = decodeMessage(buf, start, end);
    this.onMessage(m);
    this.queue.push(m);
  }

  private parse(input: Buffer): void {
    let chunk = input;
    if (this.carry) {
      chunk = Buffer.concat([this.carry, input]);
      this.carry = null;
    }
    const before = this.size;
    let pos = 0;
    while (pos < chunk.length) {
      if (this.pendingTotal > 0) {
        // The rest of a message that began in an earlier chunk.
        const n = Math.min(this.pendingTotal - this.pendingBytes, chunk.length - pos);
        this.pending.push(chunk.subarray(pos, pos + n));
        this.pendingBytes += n;
        pos += n;
        if (this.pendingBytes === this.pendingTotal) {
          const whole = Buffer.concat(this.pending);
          this.pending = [];
          this.pendingBytes = 0;
          this.pendingTotal = 0;
          this.push(whole, 0, whole.length);
        }
        continue;
      }
      if (chunk.length - pos < 5) {
        this.carry = Buffer.from(chunk.subarray(pos));
        break;
      }
      const code = chunk[pos] as number;
      const length = chunk.readUInt32BE(pos + 1);
      const end = pos + 1 + length;
      if (code === COPY_DATA) {
        if (end <= chunk.length) {
          this.push(chunk, pos + 5, end);
        } else {
          this.pendingTotal = length - 4;
          this.pending.push(chunk.subarray(pos + 5));
          this.pendingBytes = chunk.length - pos - 5;
        }
        pos = end;
      } else if (code === COPY_BOTH_RESPONSE || INTERSPERSED.has(code)) {
        if (end > chunk.length) {
          // Rare and small: keep it whole for the next chunk.
          this.carry = Buffer.from(chunk.subarray(pos));
          break;
        }
        pos = end;
      } else {
        // CopyDone (the server ends the stream), an error, or anything else: pg reads it.
        if (code === COPY_DONE) this.ended = true;
        this.reader?.detach(chunk.subarray(pos));
        this.notify();
        return;
      }
    }
    if (this.size >= QUEUE_HIGH) this.reader?.pause();
    if (this.size > before) this.notify();
  }
}

function decodeMessage(buf: Buffer, start: number, end: number): StreamMessage {
  const tag = buf[start];
  if (tag === 0x77 /* w */) return new XLogData(buf, start, end);
  if (tag === 0x6b /* k */) {
    if (end - start < 18) throw new Error('replication keepalive message truncated');
    return { kind: 'keepalive', walEnd: buf.readBigUInt64BE(start + 1), replyRequested: buf[start + 17] === 1 };
  }
  throw new Error(`unexpected replication message type 0x${(tag ?? 0).toString(16)}`);
}

export class WalStream implements ChangeFeed<XLogData> {
  private readonly replication: Replication;
  private flushed: Lsn;
  private received: Lsn;
  /** The last XLogData message, whose end position `received` has not taken in yet. */
  private lastData: XLogData | null = null;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly conn: ReplicationConnection,
    opts: WalStreamOptions,
  ) {
    this.flushed = opts.startLsn;
    this.received = opts.startLsn;
    // messages: transactional logical messages come through, among them the fence's marker
    // that cutover waits for (cutover/fence.ts).
    const sql =
      `START_REPLICATION SLOT ${opts.slotName} LOGICAL ${formatLsn(opts.startLsn)} ` +
      `(proto_version '1', publication_names ${quoteLiteral(quoteIdent(opts.publicationName))}, messages 'true')`;
    this.replication = new Replication(sql, (m) => {
      if (m.kind === 'xlog') this.lastData = m;
      else if (m.replyRequested) this.sendStatus(false);
    });
    conn.client.query(this.replication);
    this.timer = setInterval(() => this.sendStatus(false), opts.statusIntervalMs ?? 10_000);
    this.timer.unref();
  }

  static start(conn: ReplicationConnection, opts: WalStreamOptions): WalStream {
    return new WalStream(conn, opts);
  }

  /** The highest LSN acknowledged to the source as durable. */
  get confirmedLsn(): Lsn {
    return this.flushed;
  }

  /** A message already read, if any (no waiting). */
  poll(): StreamMessage | undefined {
    if (this.replication.error) return undefined;
    return this.replication.shift();
  }

  /**
   * The next message, or TIMEOUT after `timeoutMs` without one. Messages already read are
   * returned at once, without a timer or a promise per message: at tens of thousands of
   * changes a second that overhead is what would limit the apply. The change stream never
   * ends by itself: its end is a failure (transient: the next run resumes from the target's
   * record), never ENDED.
   */
  async next(timeoutMs: number): Promise<StreamMessage | typeof TIMEOUT | typeof ENDED> {
    const r = this.replication;
    for (let waited = false; ; waited = true) {
      if (r.error) throw r.error;
      const m = r.shift();
      if (m !== undefined) return m;
      if (r.ended || this.conn.client.connection.stream.destroyed) {
        throw new WalbridgeError('connection', 'the source ended the change stream', { transient: true });
      }
      if (waited) return TIMEOUT;
      await r.waitFor(timeoutMs);
    }
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
  requestPosition(): void {
    this.sendStatus(true);
  }

  private sendStatus(replyRequested: boolean): void {
    const socket = this.replication.socket;
    if (this.closed || this.replication.error || this.replication.ended || !socket || socket.destroyed || socket.writableEnded) return;
    if (this.lastData !== null) {
      // WAL positions only grow: the last message received holds the highest.
      const walEnd = this.lastData.walEnd;
      if (walEnd > this.received) this.received = walEnd;
      this.lastData = null;
    }
    // CopyData ('d', length) around a Standby Status Update ('r', written, flushed, applied, time, reply?).
    const buf = Buffer.alloc(39);
    buf[0] = COPY_DATA;
    buf.writeUInt32BE(38, 1);
    buf[5] = 0x72; // 'r'
    const written = this.received > this.flushed ? this.received : this.flushed;
    buf.writeBigUInt64BE(written, 6);
    buf.writeBigUInt64BE(this.flushed, 14);
    buf.writeBigUInt64BE(this.flushed, 22);
    buf.writeBigUInt64BE(pgMicrosNow(), 30);
    buf[38] = replyRequested ? 1 : 0;
    socket.write(buf);
  }

  /** Send a last status with the durable position and close the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.sendStatus(false);
    this.closed = true;
    clearInterval(this.timer);
    this.replication.reader?.discard();
    await new Promise<void>((resolve) => {
      // Give the status message a moment to leave the socket before the Terminate message.
      setImmediate(resolve);
    });
    await this.conn.close();
  }
}

/** A replication connection to the source, streaming `slotName` from `startLsn`. */
export async function openWalStream(sourceUrl: string, opts: WalStreamOptions, log: Logger): Promise<WalStream> {
  const conn = await ReplicationConnection.open(sourceUrl, 'walbridge stream');
  try {
    await conn.identifySystem(sourceUrl);
  } catch (err) {
    await conn.close();
    throw err;
  }
  log.info({ component: 'stream', slot: opts.slotName, lsn: formatLsn(opts.startLsn) }, 'streaming changes from the slot');
  return WalStream.start(conn, opts);
}
