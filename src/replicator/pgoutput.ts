/**
 * Decoder for pgoutput protocol version 1 messages
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
 *
 * Values stay exactly as the source's output functions wrote them (text), so they reach
 * the target's input functions unchanged: no Date, no Number, no JSON.parse on the way.
 * An unchanged TOAST value is a distinct marker, never a NULL or a placeholder.
 */
import type { Lsn } from '../lsn.js';

/** The column value was not sent because it is an unchanged TOASTed value. */
export const UNCHANGED_TOAST: unique symbol = Symbol('unchanged-toast');
/** One column's value as text, for the few places that need it (messages, tests). */
export type TupleValue = string | null | typeof UNCHANGED_TOAST;

const NULL_LEN = -1;
const UNCHANGED_LEN = -2;

/** 64k ints (256 kB): the positions of about 2,000 rows of 16 columns. */
const SLAB_INTS = 64 * 1024;

/**
 * Where the row images of the stream keep their column positions: slices of a shared
 * Int32Array, handed out in order. One small array per row was the largest share of what the
 * daemon allocated while draining (a sixth of its heap allocations in a sampled allocation
 * profile of the bench's app drain), and rows live until their batch commits, long enough to be
 * collected only by full mark-compacts. A slab holds the positions of a few thousand rows; it is
 * freed once none of them is referenced.
 */
class PositionSlab {
  /** The slab being handed out (read it after take(): a full one is replaced). */
  slab = new Int32Array(SLAB_INTS);
  private used = 0;

  /** Room for `n` ints in `slab`: where they start. */
  take(n: number): number {
    if (this.used + n > this.slab.length) {
      this.slab = new Int32Array(Math.max(SLAB_INTS, n));
      this.used = 0;
    }
    const base = this.used;
    this.used += n;
    return base;
  }
}

const positions = new PositionSlab();

/**
 * A row image as pgoutput sent it: where each column's value sits in the message. Values are
 * not decoded or copied on the way: apply hands the same bytes to the target (as elements of
 * binary text[] parameters, read there by the target's input functions), so no value passes
 * through a JavaScript string, Number or Date, and nothing needs escaping. Positions instead of
 * a string per value is also what keeps decoding cheap at tens of thousands of changes a second.
 */
export class Tuple {
  constructor(
    readonly buf: Buffer,
    /**
     * Per column i: start (base + 2i) and length (base + 2i + 1) in `buf`; length -1 NULL,
     * -2 unchanged TOAST. A slice of a shared slab (PositionSlab).
     */
    private readonly at: Int32Array,
    private readonly base: number,
    /** Number of columns. */
    readonly length: number,
    /** Bytes the row image takes in the message (`buf` may hold much more: a whole socket read). */
    readonly size: number = buf.length,
  ) {}

  /** A tuple from values given as text (tests, and rows built outside the stream). */
  static of(values: readonly TupleValue[]): Tuple {
    const parts = values.map((v) => (typeof v === 'string' ? Buffer.from(v, 'utf8') : null));
    const base = positions.take(values.length * 2);
    const slab = positions.slab;
    let pos = 0;
    values.forEach((v, i) => {
      const b = parts[i];
      slab[base + 2 * i] = pos;
      slab[base + 2 * i + 1] = b ? b.length : v === null ? NULL_LEN : UNCHANGED_LEN;
      if (b) pos += b.length;
    });
    return new Tuple(Buffer.concat(parts.flatMap((b) => (b === null ? [] : [b]))), slab, base, values.length);
  }

  /** Where column i's value starts in `buf`. */
  private startOf(i: number): number {
    return this.at[this.base + 2 * i] as number;
  }

  /** Column i's length in bytes; NULL_LEN or UNCHANGED_LEN for a value not there. */
  private lengthAt(i: number): number {
    return this.at[this.base + 2 * i + 1] as number;
  }

  isNull(i: number): boolean {
    return this.lengthAt(i) === NULL_LEN;
  }

  isUnchanged(i: number): boolean {
    return this.lengthAt(i) === UNCHANGED_LEN;
  }

  /** Bytes of column i's value (0 for NULL or unchanged). */
  byteLength(i: number): number {
    const n = this.lengthAt(i);
    return n > 0 ? n : 0;
  }

  /** Copy column i's bytes into `target` at `pos`; returns the position after them. */
  copyValue(i: number, target: Buffer, pos: number): number {
    const n = this.byteLength(i);
    const start = this.startOf(i);
    if (n > 32) {
      this.buf.copy(target, pos, start, start + n);
    } else {
      // Most values are a few bytes: a loop beats Buffer.copy's call overhead.
      const src = this.buf;
      for (let k = 0; k < n; k++) target[pos + k] = src[start + k] as number;
    }
    return pos + n;
  }

  /** Column i's value as bytes (a view, not a copy), or null. */
  bytes(i: number): Buffer | null {
    if (this.isNull(i)) return null;
    const start = this.startOf(i);
    return this.buf.subarray(start, start + this.byteLength(i));
  }

  /** Column i's value as text. */
  text(i: number): TupleValue {
    if (this.isNull(i)) return null;
    if (this.isUnchanged(i)) return UNCHANGED_TOAST;
    const start = this.startOf(i);
    return this.buf.toString('utf8', start, start + this.byteLength(i));
  }

  /** Every value as text. */
  values(): TupleValue[] {
    return Array.from({ length: this.length }, (_, i) => this.text(i));
  }

  /** Column i holds the same value (or the same NULL / unchanged marker) as column j of `other`. */
  sameValue(i: number, other: Tuple, j: number): boolean {
    const n = this.lengthAt(i);
    if (n !== other.lengthAt(j)) return false;
    if (n <= 0) return true;
    const a = this.startOf(i);
    const b = other.startOf(j);
    return this.buf.compare(other.buf, b, b + n, a, a + n) === 0;
  }

  /**
   * A name for these columns' values: equal names, equal values. Null when one of them is an
   * unchanged TOAST value (the row cannot be named). A single value written as a plain whole
   * number (digits, no leading zero: how an integer key prints) is named by that number: no
   * string to make, and the cheapest kind of Map key; any other text cannot be confused with it.
   * Otherwise a string: values never contain a NUL byte (PostgreSQL text cannot), which keeps
   * the joined form unambiguous; a single non-NULL value is its own name (as latin1: one
   * character per byte, the cheapest string to make).
   */
  keyOf(idx: readonly number[]): RowKey | null {
    if (idx.length === 1) {
      const i = idx[0] as number;
      const n = this.lengthAt(i);
      if (n >= 0) {
        const start = this.startOf(i);
        return wholeNumber(this.buf, start, start + n) ?? this.buf.toString('latin1', start, start + n);
      }
    }
    let out = '';
    for (const i of idx) {
      const n = this.lengthAt(i);
      if (n === UNCHANGED_LEN) return null;
      if (n === NULL_LEN) out += '\0n';
      else {
        const start = this.startOf(i);
        out += '\0t' + this.buf.toString('latin1', start, start + n);
      }
    }
    return out;
  }
}

/** What names a row among the changes of a batch (Tuple.keyOf). */
export type RowKey = string | number;

/** Fifteen digits at most: every such number is exact in a double. */
const MAX_KEY_DIGITS = 15;

/** The number that bytes [start, end) write as plain digits without a leading zero, else null. */
function wholeNumber(buf: Buffer, start: number, end: number): number | null {
  const len = end - start;
  if (len === 0 || len > MAX_KEY_DIGITS || (buf[start] === 0x30 && len > 1)) return null;
  let v = 0;
  for (let p = start; p < end; p++) {
    const d = (buf[p] as number) - 0x30;
    if (d < 0 || d > 9) return null;
    v = v * 10 + d;
  }
  return v;
}

export interface RelationColumn {
  name: string;
  typeOid: number;
  typeMod: number;
  /** Part of the replica identity (the key pgoutput sends for UPDATE/DELETE). */
  isKey: boolean;
}

export interface RelationMessage {
  tag: 'relation';
  relationId: number;
  schema: string;
  name: string;
  replicaIdentity: 'd' | 'n' | 'f' | 'i';
  columns: RelationColumn[];
}

export interface BeginMessage {
  tag: 'begin';
  /** LSN of the commit record: the transaction's position in commit order. */
  finalLsn: Lsn;
  /** Microseconds since 2000-01-01 UTC. */
  commitTime: bigint;
  xid: number;
}

export interface CommitMessage {
  tag: 'commit';
  commitLsn: Lsn;
  /** LSN just past the commit record; restart after this to skip the transaction. */
  endLsn: Lsn;
  commitTime: bigint;
}

export interface InsertMessage {
  tag: 'insert';
  relationId: number;
  newTuple: Tuple;
}

export interface UpdateMessage {
  tag: 'update';
  relationId: number;
  /** 'K': old key only (key changed or toasted); 'O': whole old row (REPLICA IDENTITY FULL); null: key unchanged. */
  oldKind: 'K' | 'O' | null;
  oldTuple: Tuple | null;
  newTuple: Tuple;
}

export interface DeleteMessage {
  tag: 'delete';
  relationId: number;
  oldKind: 'K' | 'O';
  oldTuple: Tuple;
}

export interface TruncateMessage {
  tag: 'truncate';
  relationIds: number[];
  cascade: boolean;
  restartIdentity: boolean;
}

/** A logical decoding message (pg_logical_emit_message); a transactional one sits inside its transaction. */
export interface LogicalMessage {
  tag: 'message';
  transactional: boolean;
  lsn: Lsn;
  prefix: string;
  content: Buffer;
}

export interface OtherMessage {
  tag: 'origin' | 'type';
}

export type PgoutputMessage =
  | RelationMessage
  | BeginMessage
  | CommitMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | LogicalMessage
  | OtherMessage;

export type ChangeMessage = InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage;

/**
 * Reads one message at a time. There is one, set to each message in turn (decoding is
 * synchronous): an object per message was garbage at tens of thousands of messages a second.
 */
class Reader {
  pos = 0;
  private buf: Buffer = Buffer.alloc(0);
  /** The message ends here (it may sit inside a larger buffer). */
  private end = 0;

  /** Read [from, end) of `buf` from now on. */
  reset(buf: Buffer, from: number, end: number): this {
    this.buf = buf;
    this.pos = from;
    this.end = end;
    return this;
  }

  get buffer(): Buffer {
    return this.buf;
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++] as number;
  }
  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0 || end >= this.end) throw new Error('pgoutput: unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  skip(len: number): void {
    this.need(len);
    this.pos += len;
  }
  /** `len` bytes, copied (a message's content outlives the socket chunk it came in). */
  bytes(len: number): Buffer {
    this.need(len);
    const out = Buffer.from(this.buf.subarray(this.pos, this.pos + len));
    this.pos += len;
    return out;
  }
  private need(n: number): void {
    if (this.pos + n > this.end) throw new Error('pgoutput: message truncated');
  }
}

function readTuple(r: Reader): Tuple {
  const from = r.pos;
  const n = r.i16();
  const base = positions.take(n * 2);
  const slab = positions.slab;
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    const at = base + 2 * i;
    switch (kind) {
      case 0x6e: // 'n' null
        slab[at] = 0;
        slab[at + 1] = NULL_LEN;
        break;
      case 0x75: // 'u' unchanged TOAST: the target keeps its value
        slab[at] = 0;
        slab[at + 1] = UNCHANGED_LEN;
        break;
      case 0x74: {
        // 't' text: its bytes stay where they are
        const len = r.i32();
        slab[at] = r.pos;
        slab[at + 1] = len;
        r.skip(len);
        break;
      }
      case 0x62: // 'b' binary: only sent when the subscriber asks for binary, which we never do
        throw new Error('pgoutput: binary tuple data was not requested');
      default:
        throw new Error(`pgoutput: unknown tuple data kind 0x${kind.toString(16)}`);
    }
  }
  return new Tuple(r.buffer, slab, base, n, r.pos - from);
}

const IDENTITIES = new Set(['d', 'n', 'f', 'i']);

/** Decode the message in `buf` from `offset` to `end` (values stay in `buf`, see Tuple). */
const reader = new Reader();

export function decodePgoutput(buf: Buffer, offset = 0, end = buf.length): PgoutputMessage {
  const r = reader.reset(buf, offset, end);
  const tag = r.u8();
  switch (tag) {
    case 0x42: // 'B'
      return { tag: 'begin', finalLsn: r.u64(), commitTime: r.i64(), xid: r.u32() };
    case 0x43: {
      // 'C'
      r.u8(); // flags, unused
      return { tag: 'commit', commitLsn: r.u64(), endLsn: r.u64(), commitTime: r.i64() };
    }
    case 0x52: {
      // 'R'
      const relationId = r.u32();
      const schema = r.cstring();
      const name = r.cstring();
      const ident = String.fromCharCode(r.u8());
      if (!IDENTITIES.has(ident)) throw new Error(`pgoutput: unknown replica identity ${ident}`);
      const n = r.i16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < n; i++) {
        const flags = r.u8();
        const colName = r.cstring();
        const typeOid = r.u32();
        const typeMod = r.i32();
        columns.push({ name: colName, typeOid, typeMod, isKey: (flags & 1) === 1 });
      }
      return { tag: 'relation', relationId, schema, name, replicaIdentity: ident as RelationMessage['replicaIdentity'], columns };
    }
    case 0x49: {
      // 'I'
      const relationId = r.u32();
      const n = r.u8();
      if (n !== 0x4e) throw new Error('pgoutput: INSERT without new tuple');
      return { tag: 'insert', relationId, newTuple: readTuple(r) };
    }
    case 0x55: {
      // 'U'
      const relationId = r.u32();
      let kind = r.u8();
      let oldKind: UpdateMessage['oldKind'] = null;
      let oldTuple: Tuple | null = null;
      if (kind === 0x4b || kind === 0x4f) {
        oldKind = kind === 0x4b ? 'K' : 'O';
        oldTuple = readTuple(r);
        kind = r.u8();
      }
      if (kind !== 0x4e) throw new Error('pgoutput: UPDATE without new tuple');
      return { tag: 'update', relationId, oldKind, oldTuple, newTuple: readTuple(r) };
    }
    case 0x44: {
      // 'D'
      const relationId = r.u32();
      const kind = r.u8();
      if (kind !== 0x4b && kind !== 0x4f) throw new Error('pgoutput: DELETE without old tuple');
      return { tag: 'delete', relationId, oldKind: kind === 0x4b ? 'K' : 'O', oldTuple: readTuple(r) };
    }
    case 0x54: {
      // 'T'
      const count = r.u32();
      const flags = r.u8();
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.u32());
      return { tag: 'truncate', relationIds, cascade: (flags & 1) !== 0, restartIdentity: (flags & 2) !== 0 };
    }
    case 0x4f: // 'O' origin
      return { tag: 'origin' };
    case 0x59: // 'Y' type
      return { tag: 'type' };
    case 0x4d: {
      // 'M' logical decoding message (sent with the messages option; no xid outside streaming mode)
      const flags = r.u8();
      const lsn = r.u64();
      const prefix = r.cstring();
      const length = r.i32();
      return { tag: 'message', transactional: (flags & 1) !== 0, lsn, prefix, content: r.bytes(length) };
    }
    default:
      throw new Error(`pgoutput: unknown message type 0x${tag.toString(16)}`);
  }
}

/** A cheap peek used by the spool: which messages end a transaction. */
export function messageTag(buf: Buffer): number {
  return buf[0] ?? 0;
}
export const TAG_BEGIN = 0x42;
export const TAG_COMMIT = 0x43;

/** Commit end LSN straight from the bytes, without a full decode. */
export function commitEndLsn(buf: Buffer): Lsn {
  return buf.readBigUInt64BE(10);
}

/**
 * A TRUNCATE message of one relation, as pgoutput would have sent it: a TRUNCATE of several
 * tables is held (tables/) for the one table holding its changes only.
 */
export function encodeTruncate(relationId: number, cascade: boolean, restartIdentity: boolean): Buffer {
  const buf = Buffer.alloc(10);
  buf.writeUInt8(0x54, 0);
  buf.writeUInt32BE(1, 1);
  buf.writeUInt8((cascade ? 1 : 0) | (restartIdentity ? 2 : 0), 5);
  buf.writeUInt32BE(relationId, 6);
  return buf;
}
