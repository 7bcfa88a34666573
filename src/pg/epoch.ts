/**
 * PostgreSQL's own clock: the replication protocol and pgoutput count time in microseconds
 * since 2000-01-01 00:00:00 UTC (a bigint), JavaScript in milliseconds since 1970. Every
 * conversion between the two lives here, so the epoch is written once.
 */

/** 2000-01-01T00:00:00Z in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

/** Microseconds since PostgreSQL's epoch, as pgoutput and standby status messages carry them. */
export type PgMicros = bigint;

export function pgMicrosFromMs(unixMs: number): PgMicros {
  return BigInt(Math.round(unixMs) - PG_EPOCH_MS) * 1000n;
}

export function pgMicrosNow(): PgMicros {
  return pgMicrosFromMs(Date.now());
}

/** Unix milliseconds (sub-millisecond digits dropped), or null. */
export function pgMicrosToMs(us: PgMicros | null): number | null {
  return us === null ? null : Number(us / 1000n) + PG_EPOCH_MS;
}

/** Exact ISO text with all six fractional digits (a JS Date keeps three), for timestamptz parameters. */
export function pgMicrosToIso(us: PgMicros | null): string | null {
  if (us === null) return null;
  const unixUs = us + BigInt(PG_EPOCH_MS) * 1000n;
  const ms = unixUs / 1000n;
  const micros = (unixUs % 1_000_000n).toString().padStart(6, '0');
  const iso = new Date(Number(ms)).toISOString(); // 2024-01-01T00:00:00.123Z
  return `${iso.slice(0, 19)}.${micros}Z`;
}
