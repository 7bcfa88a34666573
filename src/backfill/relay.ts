/**
 * COPY from one server straight into another, without re-framing a row.
 *
 * A backend's CopyData message ('d', int32 length, bytes) has exactly the format of a
 * frontend's, and PostgreSQL sends one row per CopyData message in COPY TO. So the bytes read
 * from the source's socket during `COPY ... TO STDOUT` are written to the target's socket during
 * `COPY ... FROM STDIN` as they came, whole runs of messages at a time: JavaScript only reads
 * each message's 5-byte header (to count rows and find the end). pg-copy-streams, which this
 * replaces for the copy, slices every row out of the socket buffer on one side and wraps every
 * chunk in a new message on the other: at a million rows that bookkeeping was the daemon's
 * whole CPU during the copy, on a machine where it competes with both servers.
 *
 * Backpressure: when the target's socket buffer is full, the source's socket is not read
 * until it drains (so the source's COPY waits too). A rate limit holds reading back the same way.
 * On any failure the relay stops; the connections are then mid-protocol and must be closed
 * (each server rolls its side back), as with any COPY cut off.
 */
import type { Duplex } from 'node:stream';
import type pg from 'pg';
import { INTERSPERSED, RawQuery, SocketReader } from '../pg/raw-query.js';

export interface RelayProgress {
  rows: number;
  bytes: number;
}

export interface RelayOptions {
  /** Called as rows pass, with the rows and payload bytes since the last call. */
  onProgress?: (delta: RelayProgress) => void;
  /** Hold the copy to this many bytes a second of COPY data. */
  maxBytesPerSecond?: number | null;
  /** The COPY format both statements use (to count rows: see CopyOut.rows). */
  format?: 'text' | 'binary';
}

const COPY_DATA = 0x64; // 'd'
const COPY_DONE = 0x63; // 'c'
const COPY_OUT_RESPONSE = 0x48; // 'H'
const COPY_DONE_MESSAGE = Buffer.from([COPY_DONE, 0, 0, 0, 4]);

/** `COPY ... FROM STDIN` on the target: ready to take CopyData messages once the server says so. */
class CopyIn extends RawQuery {
  readonly ready: Promise<Duplex>;
  private resolveReady!: (s: Duplex) => void;
  private rejectReady!: (e: Error) => void;

  constructor(text: string) {
    super(text);
    this.ready = new Promise<Duplex>((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    this.ready.catch(() => {});
  }

  submit(connection: pg.Connection): void {
    this.connection = connection;
    connection.query(this.text);
  }

  handleCopyInResponse(connection: pg.Connection): void {
    this.resolveReady(connection.stream);
  }

  protected override onFailure(err: Error): void {
    this.rejectReady(err);
  }
}

/**
 * `COPY ... TO STDOUT` on the source, read straight off its socket (as pg-copy-streams does:
 * pg's own reader is detached for the duration, and given back what follows the copy).
 */
class CopyOut extends RawQuery {
  /**
   * One CopyData message a row. In binary format the file header rides in the first row's
   * message and the trailer comes in a message of its own, so the count starts one lower.
   */
  rows: number;
  bytes = 0;
  private reader: SocketReader | null = null;
  /** Bytes of the current message still to come, and whether they are forwarded. */
  private remaining = 0;
  private forwarding = false;
  /** The start of a message header cut off at the end of the last chunk. */
  private carry: Buffer | null = null;

  constructor(
    text: string,
    /** Takes forwarded bytes; false when it wants no more for now. */
    private readonly sink: (bytes: Buffer) => boolean,
    /** Around each turn of reading (everything the socket holds): to batch writes, report, throttle. */
    private readonly turn: { before: () => void; after: () => void },
    format: 'text' | 'binary',
  ) {
    super(text);
    this.rows = format === 'binary' ? -1 : 0;
  }

  submit(connection: pg.Connection): void {
    this.connection = connection;
    this.reader = new SocketReader(connection.stream, (chunk) => this.parse(chunk), this.turn);
    connection.query(this.text);
  }

  /** Stop reading until resume() (the target is full, or the rate limit says wait). */
  pause(): void {
    this.reader?.pause();
  }

  resume(): void {
    this.reader?.resume();
  }

  private parse(input: Buffer): void {
    let chunk = input;
    if (this.carry) {
      chunk = Buffer.concat([this.carry, input]);
      this.carry = null;
    }
    let pos = 0;
    let runStart = -1;
    const endRun = (end: number) => {
      if (runStart >= 0 && end > runStart && !this.sink(chunk.subarray(runStart, end))) this.pause();
      runStart = -1;
    };
    while (pos < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - pos);
        if (this.forwarding && runStart < 0) runStart = pos;
        pos += n;
        this.remaining -= n;
        continue;
      }
      if (chunk.length - pos < 5) {
        endRun(pos);
        this.carry = Buffer.from(chunk.subarray(pos));
        return;
      }
      const code = chunk[pos] as number;
      const length = chunk.readUInt32BE(pos + 1);
      if (code === COPY_DATA) {
        if (runStart < 0) runStart = pos;
        this.rows++;
        this.bytes += length - 4;
        this.forwarding = true;
      } else if (code === COPY_DONE) {
        endRun(pos);
        this.detach(chunk.subarray(pos + 1 + length));
        return;
      } else if (code === COPY_OUT_RESPONSE || INTERSPERSED.has(code)) {
        endRun(pos);
        this.forwarding = false;
      } else {
        // An error (or anything else): pg reads it and tells this query.
        endRun(pos);
        this.detach(chunk.subarray(pos));
        return;
      }
      this.remaining = 1 + length;
    }
    endRun(chunk.length);
  }

  private detach(rest: Buffer): void {
    this.reader?.detach(rest);
  }

  protected override onFailure(): void {
    this.pause();
  }

  get copyDone(): boolean {
    return this.reader?.isDetached ?? false;
  }
}

/**
 * Run `copyOut` (COPY ... TO STDOUT) on `source` into `copyIn` (COPY ... FROM STDIN) on
 * `target`, inside whatever transactions both are in. Resolves with the rows and bytes copied
 * once both servers have completed their COPY.
 */
export async function relayCopy(source: pg.ClientBase, target: pg.ClientBase, copyOut: string, copyIn: string, opts: RelayOptions = {}): Promise<RelayProgress> {
  const into = new CopyIn(copyIn);
  target.query(into);
  const targetSocket = await into.ready;
  const started = Date.now();
  const maxBps = opts.maxBytesPerSecond ?? null;
  let reported = { rows: 0, bytes: 0 };
  let waitingForDrain = false;
  let rateTimer: NodeJS.Timeout | null = null;
  const onDrain = () => {
    waitingForDrain = false;
    if (rateTimer === null) out.resume();
  };
  const out: CopyOut = new CopyOut(
    copyOut,
    (bytes) => {
      if (targetSocket.write(bytes)) return true;
      if (!waitingForDrain) {
        waitingForDrain = true;
        targetSocket.once('drain', onDrain);
      }
      return false;
    },
    {
      // What one chunk forwards leaves in one write (the socket is corked meanwhile).
      before: () => targetSocket.cork(),
      after: () => {
        targetSocket.uncork();
        report(false);
        // Checked whether or not the target is also full: writes of a whole socket read fill
        // its buffer nearly every time, and a rate checked only when it is not would never bite.
        if (maxBps === null || rateTimer !== null) return;
        const ahead = (1000 * out.bytes) / maxBps - (Date.now() - started);
        if (ahead > 5) {
          out.pause();
          rateTimer = setTimeout(() => {
            rateTimer = null;
            if (!waitingForDrain) out.resume();
          }, ahead);
        }
      },
    },
    opts.format ?? 'text',
  );
  /** Progress goes out every 100 ms at most (and at the end), not per socket read. */
  let reportedAt = 0;
  const report = (final: boolean) => {
    const now = Date.now();
    if (!final && now - reportedAt < 100) return;
    reportedAt = now;
    const delta = { rows: out.rows - reported.rows, bytes: out.bytes - reported.bytes };
    if (delta.bytes === 0) return; // (rows -1 of a binary copy yet to send its first row is not news)
    reported = { rows: out.rows, bytes: out.bytes };
    opts.onProgress?.(delta);
  };
  // If the target fails mid-copy (a bad value, a constraint), stop reading the source and fail
  // at once: the source's COPY would wait forever for the relay to read on.
  const targetFailed = new Promise<never>((_, reject) => {
    into.done.catch((err: unknown) => {
      out.pause();
      reject(err instanceof Error ? err : new Error(String(err)));
    });
  });
  targetFailed.catch(() => {});
  source.query(out);
  try {
    await Promise.race([out.done, targetFailed]);
    if (!out.copyDone) throw new Error('the source ended its COPY without CopyDone');
    targetSocket.write(COPY_DONE_MESSAGE);
    await into.done;
    report(true);
  } finally {
    if (rateTimer) clearTimeout(rateTimer);
    targetSocket.removeListener('drain', onDrain);
  }
  return { rows: out.rows, bytes: out.bytes };
}
