/**
 * Log sequence numbers.
 *
 * Postgres prints an LSN as two 32-bit hex halves ("16/B374D848"). We keep LSNs as
 * `bigint` inside the daemon so they compare and subtract exactly (a JS number loses
 * precision past 2^53, which a long-lived cluster's WAL position can exceed), and only
 * format them as text at the edges (SQL parameters, logs, metrics).
 */
export type Lsn = bigint;

export const ZERO_LSN: Lsn = 0n;

const LSN_TEXT = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/;

export function parseLsn(text: string): Lsn {
  const m = LSN_TEXT.exec(text.trim());
  if (!m || m[1] === undefined || m[2] === undefined) {
    throw new Error(`not an LSN: ${JSON.stringify(text)}`);
  }
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(lsn: Lsn): string {
  if (lsn < 0n || lsn > 0xffffffffffffffffn) throw new Error(`LSN out of range: ${lsn}`);
  const hi = (lsn >> 32n).toString(16).toUpperCase();
  const lo = (lsn & 0xffffffffn).toString(16).toUpperCase();
  return `${hi}/${lo}`;
}

/** Nullable convenience for values read from pg_lsn columns. */
export function parseLsnOrNull(text: string | null | undefined): Lsn | null {
  return text === null || text === undefined ? null : parseLsn(text);
}

export function maxLsn(...lsns: Array<Lsn | null | undefined>): Lsn {
  let best = ZERO_LSN;
  for (const l of lsns) if (l !== null && l !== undefined && l > best) best = l;
  return best;
}

/** Bytes between two WAL positions; 0 when `to` is not ahead of `from`. */
export function lsnDistance(from: Lsn, to: Lsn): bigint {
  return to > from ? to - from : 0n;
}
