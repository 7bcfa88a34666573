/**
 * The loop that reads the change stream into a sink (the spool during the backfill, the
 * applier afterwards). Its priorities, in order: stop when asked; commit and acknowledge
 * when a batch is due or the stream goes quiet; take the next message. The position
 * acknowledged to the source is always the sink's durable one.
 */
import { WalbridgeError } from '../errors.js';
import type { Lsn } from '../lsn.js';
import { ENDED, TIMEOUT, type WalStream, type XLogData } from './stream.js';

export interface StreamSink {
  /** Take one message; a promise only when it must wait (most messages never do). */
  handle(x: XLogData): Promise<void> | void;
  /** The server has sent everything before `lsn`. */
  noteIdlePosition(lsn: Lsn): void;
  readonly flushDue: boolean;
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
}

/** Messages handled between two turns of the event loop. */
const YIELD_EVERY = 64;

export async function consumeStream(stream: WalStream, sink: StreamSink, opts: ConsumeOptions): Promise<void> {
  const commit = async (wait = true) => {
    const durable = await sink.flush(wait);
    stream.confirm(durable);
  };
  // A batch handed over by flush() becomes durable later, maybe once the stream has gone
  // quiet: it must still be acknowledged then. A source shutting down waits for exactly that
  // (its walsender exits only once everything it sent is confirmed), and so does its lag.
  const unconfirmed = () => sink.durableLsn > stream.flushedLsn;
  let lastKeepaliveRequest = 0;
  let sinceYield = 0;
  try {
    for (;;) {
      if (opts.signal.aborted) break;
      if (opts.until?.() && !sink.inTransaction) break;
      // A message already read is taken without a promise: at tens of thousands a second the
      // promises of an await per message are most of what the loop would cost.
      const m = stream.poll() ?? (await stream.next(opts.idleFlushMs));
      if (m === TIMEOUT) {
        if (!sink.inTransaction && (!sink.idle || unconfirmed())) await commit();
        else if (sink.idle && Date.now() - lastKeepaliveRequest >= 1000) {
          // Quiet stream: ask where the source is, so the recorded position (and the lag
          // shown to operators) reaches the source's current WAL position within a second.
          lastKeepaliveRequest = Date.now();
          stream.requestKeepalive();
        }
        continue;
      }
      if (m === ENDED) {
        throw new WalbridgeError('connection', 'the source ended the change stream', { transient: true });
      }
      if (m.kind === 'keepalive') {
        // A caught-up walsender sends one after almost every transaction: committing at each
        // would make a target transaction (and a WAL flush) per source transaction. What is
        // pending waits for its batch to be due, or for the stream to go quiet (TIMEOUT above).
        sink.noteIdlePosition(m.walEnd);
        if (!sink.inTransaction && sink.flushDue) await commit();
        else if (unconfirmed()) stream.confirm(sink.durableLsn);
        continue;
      }
      const handled = sink.handle(m);
      if (handled) await handled;
      if (sink.flushDue) await commit(false);
      if (++sinceYield >= YIELD_EVERY) {
        // Messages already buffered are handled as resolved promises, which never let the
        // event loop run: without this the batch in flight would not reach the target's
        // socket (nor the source's be read) until the buffer ran dry.
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    // Stopping: keep what is complete, drop a transaction cut in the middle.
    if (!sink.inTransaction) stream.confirm(await sink.drain());
    else await sink.abandon();
  } catch (err) {
    await sink.abandon().catch(() => {});
    throw err;
  }
}
