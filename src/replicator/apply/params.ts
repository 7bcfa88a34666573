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
