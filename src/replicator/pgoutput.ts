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
export type TupleValue = string | null | typeof UNCHANGED_TOAST;
export type Tuple = TupleValue[];

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

export interface OtherMessage {
  tag: 'origin' | 'type' | 'message';
}

export type PgoutputMessage =
  | RelationMessage
  | BeginMessage
  | CommitMessage
  | InsertMessage
  | UpdateMessage
  | DeleteMessage
  | TruncateMessage
  | OtherMessage;

export type ChangeMessage = InsertMessage | UpdateMessage | DeleteMessage | TruncateMessage;

class Reader {
  pos = 0;
  constructor(private readonly buf: Buffer) {}

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
    if (end < 0) throw new Error('pgoutput: unterminated string');
    const s = this.buf.toString('utf8', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  text(len: number): string {
    this.need(len);
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }
  skip(len: number): void {
    this.need(len);
    this.pos += len;
  }
  private need(n: number): void {
    if (this.pos + n > this.buf.length) throw new Error('pgoutput: message truncated');
  }
}

function readTuple(r: Reader): Tuple {
  const n = r.i16();
  const out: Tuple = new Array<TupleValue>(n);
  for (let i = 0; i < n; i++) {
    const kind = r.u8();
    switch (kind) {
      case 0x6e: // 'n' null
        out[i] = null;
        break;
      case 0x75: // 'u' unchanged TOAST: the target keeps its value
        out[i] = UNCHANGED_TOAST;
        break;
      case 0x74: // 't' text
        out[i] = r.text(r.i32());
        break;
      case 0x62: // 'b' binary: only sent when the subscriber asks for binary, which we never do
        throw new Error('pgoutput: binary tuple data was not requested');
      default:
        throw new Error(`pgoutput: unknown tuple data kind 0x${kind.toString(16)}`);
    }
  }
  return out;
}

const IDENTITIES = new Set(['d', 'n', 'f', 'i']);

export function decodePgoutput(buf: Buffer): PgoutputMessage {
  const r = new Reader(buf);
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
    case 0x4d: // 'M' logical decoding message
      return { tag: 'message' };
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
