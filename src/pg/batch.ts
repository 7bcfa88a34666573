/**
 * Several statements in one round trip, over the extended protocol: for each statement a
 * Parse (once per connection: statements are named and kept), a Bind with its parameters and
 * an Execute; one Sync after the last.
 *
 * Why not pg's own queries: a pg Client sends a statement only after the previous one has
 * answered (a round trip each), and its pipeline mode sends a Sync after every statement and
 * refuses custom queries. Here the server runs the statements in order and, at the first
 * error, skips everything up to the Sync: exactly what a batch inside BEGIN ... COMMIT needs
 * (nothing after the failed statement runs; the transaction is left for the caller to roll
 * back). pg-cursor and pg-query-stream plug into pg the same way (a Submittable).
 *
 * The messages are written by hand into one buffer per batch, parameters straight into their
 * Bind message: a batch carries megabytes of row values, and pg's serializer would copy each
 * parameter once more into buffers of its own (external memory V8 collects with full GCs).
 */
import type pg from 'pg';

/** A binary-format parameter that writes itself into the Bind message. */
export interface BinaryParam {
  readonly byteLength: number;
  /** Write the value at `pos`; returns the position after it. */
  writeTo(out: Buffer, pos: number): number;
}

/** A parameter: binary (written in place, or bytes), a string sent as text, or NULL. */
export type Param = BinaryParam | Buffer | string | null;

export interface BatchStatement {
  text: string;
  params: readonly Param[];
}

const byConnection = new WeakMap<pg.ClientBase, PreparedStatements>();

/**
 * Statements kept on one connection, by text. One per connection (see of()), whoever uses it:
 * the spool's applier and then the live one share the target session, and a name parsed by
 * the first must never be parsed again by the second.
 */
export class PreparedStatements {
  private readonly names = new Map<string, string>();
  private next = 0;
  /** A batch failed: which of its statements the server kept is unknown. */
  private unsure = false;

  private constructor(private readonly max = 500) {}

  static of(client: pg.ClientBase): PreparedStatements {
    let p = byConnection.get(client);
    if (!p) {
      p = new PreparedStatements();
      byConnection.set(client, p);
    }
    return p;
  }

  /** The name to parse `text` under, and whether it still needs its Parse; '' for an unnamed statement. */
  lookup(text: string): { name: string; parsed: boolean } {
    const name = this.names.get(text);
    if (name !== undefined) return { name, parsed: true };
    if (this.names.size >= this.max) return { name: '', parsed: false };
    const fresh = `walbridge_${++this.next}`;
    this.names.set(text, fresh);
    return { name: fresh, parsed: false };
  }

  markUnsure(): void {
    this.unsure = true;
    this.names.clear();
  }

  /** After a failed batch, what the server kept is dropped once (outside a transaction). */
  async settle(client: pg.Client): Promise<void> {
    if (!this.unsure) return;
    await client.query('DEALLOCATE ALL');
    this.unsure = false;
  }
}

/** Rows affected per statement, in order. */
export type BatchResult = number[];

class StatementBatch implements pg.Submittable {
  readonly rowCounts: number[] = [];
  private error: Error | null = null;
  readonly done: Promise<BatchResult>;
  private resolve!: (r: BatchResult) => void;
  private reject!: (e: Error) => void;

  constructor(
    private readonly statements: readonly BatchStatement[],
    private readonly prepared: PreparedStatements,
  ) {
    this.done = new Promise<BatchResult>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
  }

  submit(connection: pg.Connection): void {
    const messages = this.statements.map((st) => ({ st, ...this.prepared.lookup(st.text) }));
    let size = 5; // Sync
    for (const m of messages) {
      if (!m.parsed) size += parseSize(m.name, m.st.text);
      size += bindSize(m.name, m.st.params) + EXECUTE.length;
    }
    const out = Buffer.allocUnsafe(size);
    let pos = 0;
    for (const m of messages) {
      if (!m.parsed) pos = writeParse(out, pos, m.name, m.st.text);
      pos = writeBind(out, pos, m.name, m.st.params);
      pos += EXECUTE.copy(out, pos);
    }
    out.write('S', pos, 'latin1');
    out.writeInt32BE(4, pos + 1);
    connection.stream.write(out);
  }

  // pg calls these as the server answers.
  handleCommandComplete(msg: { text?: string }): void {
    const m = /(\d+)$/.exec(msg.text ?? '');
    this.rowCounts.push(m ? Number(m[1]) : 0);
  }

  handleError(err: Error): void {
    // The server skips the rest up to the Sync; pg takes its ReadyForQuery without us.
    this.prepared.markUnsure();
    this.error = err;
    this.reject(err);
  }

  handleReadyForQuery(): void {
    if (this.error === null) this.resolve(this.rowCounts);
  }

  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {
    this.rowCounts.push(0);
  }
  handlePortalSuspended(): void {}
  handleCopyInResponse(): void {
    this.handleError(new Error('COPY is not supported in a statement batch'));
  }
  handleCopyData(): void {}
}

// Frontend messages of the extended protocol (https://www.postgresql.org/docs/current/protocol-message-formats.html).

/** Execute the unnamed portal, all rows. */
const EXECUTE = Buffer.from([0x45, 0, 0, 0, 9, 0, 0, 0, 0, 0]);

function cstringSize(s: string): number {
  return Buffer.byteLength(s, 'utf8') + 1;
}

function writeCString(out: Buffer, pos: number, s: string): number {
  const n = out.write(s, pos, 'utf8');
  out[pos + n] = 0;
  return pos + n + 1;
}

/** 'P', length, statement name, query text, no parameter types (each is declared in the text). */
function parseSize(name: string, text: string): number {
  return 1 + 4 + cstringSize(name) + cstringSize(text) + 2;
}

function writeParse(out: Buffer, pos: number, name: string, text: string): number {
  out[pos] = 0x50;
  let p = writeCString(out, pos + 5, name);
  p = writeCString(out, p, text);
  out.writeInt16BE(0, p);
  p += 2;
  out.writeInt32BE(p - pos - 1, pos + 1);
  return p;
}

function paramSize(v: Param): number {
  if (v === null) return 4;
  if (typeof v === 'string') return 4 + Buffer.byteLength(v, 'utf8');
  return 4 + v.byteLength;
}

/** 'B', length, portal '', statement, a format per parameter (text for strings, else binary), the values, results in text. */
function bindSize(name: string, params: readonly Param[]): number {
  let size = 1 + 4 + 1 + cstringSize(name) + 2 + 2 * params.length + 2 + 2;
  for (const v of params) size += paramSize(v);
  return size;
}

function writeBind(out: Buffer, pos: number, name: string, params: readonly Param[]): number {
  out[pos] = 0x42;
  out[pos + 5] = 0; // unnamed portal
  let p = writeCString(out, pos + 6, name);
  out.writeInt16BE(params.length, p);
  p += 2;
  for (const v of params) {
    out.writeInt16BE(typeof v === 'string' ? 0 : 1, p);
    p += 2;
  }
  out.writeInt16BE(params.length, p);
  p += 2;
  for (const v of params) {
    if (v === null) {
      out.writeInt32BE(-1, p);
      p += 4;
    } else if (typeof v === 'string') {
      const n = out.write(v, p + 4, 'utf8');
      out.writeInt32BE(n, p);
      p += 4 + n;
    } else if (Buffer.isBuffer(v)) {
      out.writeInt32BE(v.length, p);
      p += 4 + v.copy(out, p + 4);
    } else {
      out.writeInt32BE(v.byteLength, p);
      const end = v.writeTo(out, p + 4);
      if (end !== p + 4 + v.byteLength) throw new Error(`a parameter wrote ${end - p - 4} bytes, not the ${v.byteLength} it announced`);
      p = end;
    }
  }
  out.writeInt16BE(0, p); // no result format codes: text
  p += 2;
  out.writeInt32BE(p - pos - 1, pos + 1);
  return p;
}

/** Run `statements` in one round trip; resolves with the rows each affected. */
export async function runBatch(client: pg.Client, statements: readonly BatchStatement[]): Promise<BatchResult> {
  if (statements.length === 0) return [];
  const prepared = PreparedStatements.of(client);
  await prepared.settle(client);
  const batch = new StatementBatch(statements, prepared);
  client.query(batch);
  return batch.done;
}
