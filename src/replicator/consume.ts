/**
 * The one loop every change goes through: it takes messages from a feed (the live change
 * stream, or the spool written while the copy ran) and hands them to a sink (the spool
 * writer, or the applier). Its priorities, in order: stop when asked; commit and acknowledge
 * when a batch is due or the feed goes quiet; take the next message. The position
 * acknowledged to the feed is always the sink's durable one.
 *
 * The shape is pg-boss's worker (a loop with injected fetch and handle), written for a
 * stream: fetch is `poll()` (a message already read, no promise) or `next()` (wait for one),
 * handle is the sink's.
 */
import { WalbridgeError } from '../errors.js';
import type { Lsn } from '../lsn.js';

/** One pgoutput message: bytes [payloadStart, end) of `buf` (a socket read, or a spool row). */
export interface PgoutputBytes {
  readonly buf: Buffer;
  readonly payloadStart: number;
  readonly end: number;
}

/** A message's own copy of its bytes, to keep past the read they came in (held changes, a table's last Relation). */
export function copyOfMessage(m: PgoutputBytes): Buffer {
  return Buffer.from(m.buf.subarray(m.payloadStart, m.end));
}

/** The server's heartbeat: everything up to `walEnd` has been sent. */
export interface Keepalive {
  kind: 'keepalive';
  walEnd: Lsn;
  replyRequested: boolean;
}

export const TIMEOUT = Symbol('timeout');
/** The feed has nothing more, ever (the spool, once applied to its end). */
export const ENDED = Symbol('ended');

export interface ChangeFeed<M extends PgoutputBytes> {
  /** A message already read, if any (no waiting). */
  poll(): M | Keepalive | undefined;
  /** The next message, TIMEOUT after `timeoutMs` without one, or ENDED. */
  next(timeoutMs: number): Promise<M | Keepalive | typeof TIMEOUT | typeof ENDED>;
  /** Everything up to `lsn` is durable on the target. */
  confirm(lsn: Lsn): void;
  /** The last position given to confirm(). */
  readonly confirmedLsn: Lsn;
  /** Ask where the source is now (answered with a keepalive), when the feed is quiet. */
  requestPosition(): void;
}

export interface StreamSink<M extends PgoutputBytes> {
  /** Take one message; a promise only when it must wait (most messages never do). */
  handle(m: M): Promise<void> | void;
  /** The source has sent everything before `lsn`. */
  noteIdlePosition(lsn: Lsn): void;
  readonly flushDue: boolean;
  /**
   * A flush without waiting would send nothing now: the target is still busy with the last
   * batch and the next one may grow meanwhile. Asked after each message, so that a draining
   * backlog does not make a promise or two per message for nothing.
   */
  readonly gathering: boolean;
  /** Nothing received is waiting to be made durable. */
  readonly idle: boolean;
  /** The position durable on the target now (a batch in flight may have moved it since the last flush()). */
  readonly durableLsn: Lsn;
  /** True between a transaction's BEGIN and COMMIT. */
  readonly inTransaction: boolean;
  /**
   * Hand everything complete to the target (it may still be in flight); returns the durable
   * LSN. With `wait` false the sink may keep gathering while the target is busy (more is coming).
   */
  flush(wait: boolean): Promise<Lsn>;
  /** Make everything complete durable, and wait for it; returns the durable LSN. */
  drain(): Promise<Lsn>;
  /** Drop what is not durable (the source sends it again). */
  abandon(): Promise<void>;
}

export interface ConsumeOptions {
  /** How long to wait for the next message before committing what is pending. */
  idleFlushMs: number;
  signal: AbortSignal;
  /** Checked between messages; returning true ends the loop after a final flush. */
  until?: () => boolean;
  /**
   * Asked between source transactions: work that must run there with everything received
   * durable (the table set changing, tables/). The loop drains the sink, confirms, and runs it.
   */
  atBoundary?: () => (() => Promise<void>) | null;
}

/** Messages handled between two turns of the event loop. */
const YIELD_EVERY = 64;

const isKeepalive = (m: PgoutputBytes | Keepalive): m is Keepalive => (m as Keepalive).kind === 'keepalive';

export async function consumeChanges<M extends PgoutputBytes>(feed: ChangeFeed<M>, sink: StreamSink<M>, opts: ConsumeOptions): Promise<void> {
  const commit = async (wait = true) => {
    feed.confirm(await sink.flush(wait));
  };
  // A batch handed over by flush() becomes durable later, maybe once the stream has gone
  // quiet: it must still be acknowledged then. A source shutting down waits for exactly that
  // (its walsender exits only once everything it sent is confirmed), and so does its lag.
  const unconfirmed = () => sink.durableLsn > feed.confirmedLsn;
  let lastPositionRequest = 0;
  let sinceYield = 0;
  try {
    for (;;) {
      if (opts.signal.aborted) break;
      if (opts.until?.() && !sink.inTransaction) break;
      const work = sink.inTransaction ? null : (opts.atBoundary?.() ?? null);
      if (work) {
        feed.confirm(await sink.drain());
        await work();
      }
      // A message already read is taken without a promise: at tens of thousands a second the
      // promises of an await per message are most of what the loop would cost.
      const m = feed.poll() ?? (await feed.next(opts.idleFlushMs));
      if (m === ENDED) {
        if (sink.inTransaction) {
          throw new WalbridgeError('state', 'the change feed ended inside a transaction', { hint: 'Report this as a bug; restart walbridge to retry.' });
        }
        break;
      }
      if (m === TIMEOUT) {
        if (!sink.inTransaction && (!sink.idle || unconfirmed())) await commit();
        else if (sink.idle && Date.now() - lastPositionRequest >= 1000) {
          // Quiet stream: ask where the source is, so the recorded position (and the lag
          // shown to operators) reaches the source's current WAL position within a second.
          lastPositionRequest = Date.now();
          feed.requestPosition();
        }
        continue;
      }
      if (isKeepalive(m)) {
        // A caught-up walsender sends one after almost every transaction: committing at each
        // would make a target transaction (and a WAL flush) per source transaction. What is
        // pending waits for its batch to be due, or for the stream to go quiet (TIMEOUT above).
        sink.noteIdlePosition(m.walEnd);
        if (!sink.inTransaction && sink.flushDue) await commit();
        else if (unconfirmed()) feed.confirm(sink.durableLsn);
        continue;
      }
      const handled = sink.handle(m);
      if (handled) await handled;
      if (sink.flushDue && !sink.gathering) await commit(false);
      else if (unconfirmed()) feed.confirm(sink.durableLsn);
      if (++sinceYield >= YIELD_EVERY) {
        // Messages already buffered are handled as resolved promises, which never let the
        // event loop run: without this the batch in flight would not reach the target's
        // socket (nor the source's be read) until the buffer ran dry.
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    // Stopping: keep what is complete, drop a transaction cut in the middle.
    if (!sink.inTransaction) feed.confirm(await sink.drain());
    else await sink.abandon();
  } catch (err) {
    await sink.abandon().catch(() => {});
    throw err;
  }
}
