/**
 * A query that reads its answer straight off the connection's socket (COPY data, the
 * replication stream), as pg-copy-streams does: pg's own reader is set aside while it runs and
 * given back what follows, so pg still handles errors, CommandComplete and ReadyForQuery and
 * calls this query's handlers for them.
 */
import type { Duplex } from 'node:stream';
import type pg from 'pg';

/** Message types the backend may send in the middle of a COPY; never data. */
export const INTERSPERSED = new Set([0x4e /* N notice */, 0x53 /* S parameter status */, 0x41 /* A notification */]);

export abstract class RawQuery implements pg.Submittable {
  protected connection: pg.Connection | null = null;
  private failed: Error | null = null;
  private settled = false;
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (e: Error) => void;

  constructor(protected readonly text: string) {
    this.done = new Promise<void>((res, rej) => {
      this.resolveDone = res;
      this.rejectDone = rej;
    });
    this.done.catch(() => {});
  }

  abstract submit(connection: pg.Connection): void;

  get error(): Error | null {
    return this.failed;
  }

  handleError(err: Error): void {
    this.failed ??= err;
    this.onFailure(err);
    if (!this.settled) {
      this.settled = true;
      this.rejectDone(err);
    }
  }

  handleReadyForQuery(): void {
    if (this.settled) return;
    this.settled = true;
    if (this.failed) this.rejectDone(this.failed);
    else this.resolveDone();
  }

  protected onFailure(_err: Error): void {}

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(): void {}
}

/**
 * The socket of a connection, read by us until detach(). Chunks come as the socket delivers
 * them ('data' events, paused and resumed for backpressure): reading a paused socket with
 * read() instead joins everything it buffered into a new buffer each time, a copy of every byte
 * and garbage V8 collects with full GCs.
 */
export class SocketReader {
  private readonly pgOnData: (chunk: Buffer) => void;
  private detached = false;
  private paused = false;
  private readonly onData = (chunk: Buffer) => {
    if (this.detached) return;
    this.turn?.before();
    try {
      this.parse(chunk);
    } finally {
      this.turn?.after();
    }
  };

  constructor(
    readonly stream: Duplex,
    /** Handles one chunk; may call detach() or pause(). */
    private readonly parse: (chunk: Buffer) => void,
    /** Around each chunk read. */
    private readonly turn?: { before: () => void; after: () => void },
  ) {
    const listeners = stream.listeners('data') as ((chunk: Buffer) => void)[];
    if (listeners.length !== 1) throw new Error(`expected one reader on the connection, found ${listeners.length}`);
    this.pgOnData = listeners[0] as (chunk: Buffer) => void;
    stream.removeListener('data', this.pgOnData);
    stream.on('data', this.onData);
  }

  get isDetached(): boolean {
    return this.detached;
  }

  /** No more chunks until resume() (those already on their way wait in the socket's buffer). */
  pause(): void {
    if (this.paused || this.detached) return;
    this.paused = true;
    this.stream.pause();
  }

  resume(): void {
    if (!this.paused || this.detached) return;
    this.paused = false;
    this.stream.resume();
  }

  /**
   * Stop reading for good, throwing away whatever else comes (the connection is about to be
   * closed: pg must not parse the middle of a message we began, and the socket must flow to its end).
   */
  discard(): void {
    if (this.detached) return;
    this.detached = true;
    this.stream.removeListener('data', this.onData);
    this.stream.on('data', () => {});
    this.stream.resume();
  }

  /** Give the connection back to pg, with what it must still read. */
  detach(rest: Buffer): void {
    if (this.detached) return;
    this.detached = true;
    this.stream.removeListener('data', this.onData);
    this.stream.on('data', this.pgOnData);
    if (rest.length > 0) this.pgOnData(rest);
    const stream = this.stream;
    process.nextTick(() => stream.resume());
  }
}
