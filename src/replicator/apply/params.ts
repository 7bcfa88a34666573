/**
 * Statement parameters built from the bytes pgoutput sent, without decoding them.
 *
 * A column's values for a whole statement travel as one text[] in binary format (array_send):
 *   int32 ndim = 1, int32 has-nulls, int32 element type (25, text), int32 length, int32 lower
 *   bound = 1, then per element an int32 byte length (-1 for NULL) and the bytes.
 * A text element in binary format is its bytes as they are (textsend), and the target reads it
 * like text input (converted from the client encoding). pgoutput writes a value the same way
 * (int32 length, bytes), so building a parameter is copying: no escaping, no quoting, no string.
 * The array is written straight into the Bind message (pg/batch.ts): no buffer of its own.
 */
import type { BinaryParam } from '../../pg/batch.js';
import type { Tuple } from '../pgoutput.js';

const TEXT_OID = 25;
const HEADER = 20;

function writeHeader(out: Buffer, pos: number, n: number, hasNull: boolean): void {
  out.writeInt32BE(1, pos);
  out.writeInt32BE(hasNull ? 1 : 0, pos + 4);
  out.writeInt32BE(TEXT_OID, pos + 8);
  out.writeInt32BE(n, pos + 12);
  out.writeInt32BE(1, pos + 16);
}

/** Column `col` of every row's tuple, as a binary text[]. */
export class TextArray<R> implements BinaryParam {
  readonly byteLength: number;
  private readonly hasNull: boolean;

  constructor(
    private readonly rows: readonly R[],
    private readonly tupleOf: (r: R) => Tuple,
    private readonly col: number,
  ) {
    let size = HEADER;
    let hasNull = false;
    for (const r of rows) {
      const t = tupleOf(r);
      size += 4 + t.byteLength(col);
      if (t.isNull(col)) hasNull = true;
    }
    this.byteLength = size;
    this.hasNull = hasNull;
  }

  writeTo(out: Buffer, pos: number): number {
    writeHeader(out, pos, this.rows.length, this.hasNull);
    let p = pos + HEADER;
    const col = this.col;
    for (const r of this.rows) {
      const t = this.tupleOf(r);
      if (t.isNull(col)) {
        out.writeInt32BE(-1, p);
        p += 4;
      } else {
        out.writeInt32BE(t.byteLength(col), p);
        p = t.copyValue(col, out, p + 4);
      }
    }
    return p;
  }

  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.byteLength);
    this.writeTo(out, 0);
    return out;
  }
}

export function textArray<R>(rows: readonly R[], tupleOf: (r: R) => Tuple, col: number): TextArray<R> {
  return new TextArray(rows, tupleOf, col);
}

/** Short strings (no NULLs) as a binary text[]. */
export function textArrayOf(values: readonly string[]): Buffer {
  const bytes = values.map((v) => Buffer.from(v, 'utf8'));
  const out = Buffer.allocUnsafe(HEADER + bytes.reduce((a, b) => a + 4 + b.length, 0));
  writeHeader(out, 0, values.length, false);
  let pos = HEADER;
  for (const b of bytes) {
    out.writeInt32BE(b.length, pos);
    b.copy(out, pos + 4);
    pos += 4 + b.length;
  }
  return out;
}

// COPY's text format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.2): a
// row per line, values separated by tabs, NULL as \N, and in a value a backslash, newline,
// carriage return or tab written as \\, \n, \r, \t. Nothing else is escaped, so most values are
// copied as they are; only those holding one of those four bytes are rewritten.
const BACKSLASH = 0x5c;
const TAB = 0x09;
const NEWLINE = 0x0a;
const RETURN = 0x0d;
const NULL_MARK = Buffer.from('\\N', 'latin1');
const ESCAPED: Record<number, number> = { [BACKSLASH]: BACKSLASH, [NEWLINE]: 0x6e, [RETURN]: 0x72, [TAB]: 0x74 };
/** Up to this many bytes a value is scanned byte by byte; longer ones by Buffer.indexOf (memchr). */
const SHORT = 64;

/** How many bytes of `v` must be escaped. */
function escapesIn(v: Buffer): number {
  let n = 0;
  if (v.length <= SHORT) {
    for (let k = 0; k < v.length; k++) {
      const b = v[k] as number;
      if (b === BACKSLASH || b === NEWLINE || b === RETURN || b === TAB) n++;
    }
    return n;
  }
  for (const c of [BACKSLASH, NEWLINE, RETURN, TAB]) {
    for (let at = v.indexOf(c); at >= 0; at = v.indexOf(c, at + 1)) n++;
  }
  return n;
}

/**
 * Rows for `COPY … FROM STDIN` (text format), written straight into the batch's CopyData
 * message (pg/batch.ts). Values are the bytes pgoutput sent, as for the text[] parameters, read
 * by the same input functions of the target's column types.
 */
export class CopyTextRows<R> implements BinaryParam {
  readonly byteLength: number;
  /** Per value (row-major), how many of its bytes are escaped; null when none in the whole set. */
  private readonly escapes: number[] | null;

  constructor(
    private readonly rows: readonly R[],
    private readonly tupleOf: (r: R) => Tuple,
    private readonly cols: readonly number[],
  ) {
    let size = 0;
    let escapes: number[] | null = null;
    let k = 0;
    for (const r of rows) {
      const t = tupleOf(r);
      for (const i of cols) {
        if (t.isNull(i)) {
          size += NULL_MARK.length;
        } else {
          const v = t.bytes(i) as Buffer;
          const n = escapesIn(v);
          if (n > 0) (escapes ??= new Array<number>(rows.length * cols.length).fill(0))[k] = n;
          size += v.length + n;
        }
        k++;
      }
      size += cols.length; // the tabs between values and the newline
    }
    this.byteLength = size;
    this.escapes = escapes;
  }

  writeTo(out: Buffer, pos: number): number {
    let p = pos;
    let k = 0;
    const last = this.cols.length - 1;
    for (const r of this.rows) {
      const t = this.tupleOf(r);
      for (let c = 0; c <= last; c++) {
        const i = this.cols[c] as number;
        if (t.isNull(i)) {
          p += NULL_MARK.copy(out, p);
        } else if (this.escapes === null || this.escapes[k] === 0) {
          p = t.copyValue(i, out, p);
        } else {
          const v = t.bytes(i) as Buffer;
          for (let j = 0; j < v.length; j++) {
            const b = v[j] as number;
            const e = ESCAPED[b];
            if (e === undefined) {
              out[p++] = b;
            } else {
              out[p++] = BACKSLASH;
              out[p++] = e;
            }
          }
        }
        out[p++] = c === last ? NEWLINE : TAB;
        k++;
      }
    }
    return p;
  }
}
