/**
 * One error type for everything an operator may see. `kind` says which part failed,
 * `hint` says what to do about it, `cause` keeps the original for logs.
 *
 * Messages must never contain a connection string or password: errors built here name
 * hosts and roles only, and `coerceError` scrubs whatever a driver put in its message.
 */
import { redactSecrets } from './redact.js';

/** Every kind, as a list too: the metrics start a counter for each (src/health/metrics.ts). */
export const ERROR_KINDS = [
  'config', // bad or missing setting
  'connection', // could not reach a server
  'auth', // wrong password, no such role
  'privilege', // role lacks a right it needs
  'pooler', // a Supabase pooler URL where a direct connection is required
  'source', // the source cannot be replicated as configured (wal_level, slots...)
  'schema', // tables or columns differ between source and target
  'state', // walbridge's own recorded state disagrees with what it finds
  'slot', // the replication slot is missing, busy or invalidated
  'apply', // a change could not be applied on the target
  'internal',
] as const;
export type ErrorKind = (typeof ERROR_KINDS)[number];

export class WalbridgeError extends Error {
  readonly kind: ErrorKind;
  readonly hint: string | undefined;
  /** Retrying later (same process, same config) can succeed. */
  readonly transient: boolean;

  constructor(
    kind: ErrorKind,
    message: string,
    opts: { hint?: string; cause?: unknown; transient?: boolean } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'WalbridgeError';
    this.kind = kind;
    this.hint = opts.hint;
    this.transient = opts.transient ?? false;
  }
}

/** SQLSTATEs after which the same work can simply be tried again. Kept narrow on purpose. */
const TRANSIENT_SQLSTATES = new Set([
  '57P01', // admin_shutdown (server restarting, pg_terminate_backend)
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up / shutting down)
  '53300', // too_many_connections
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '55006', // object_in_use: the slot is active for another walsender (overlapping deploy)
  '08000', // connection_exception
  '08003', // connection_does_not_exist
  '08006', // connection_failure
  '08001', // sqlclient_unable_to_establish_sqlconnection
  '08004', // sqlserver_rejected_establishment_of_sqlconnection
  '25006', // read_only_sql_transaction (failover in progress)
]);

const TRANSIENT_NODE_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'ETIMEDOUT',
  'EPIPE',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);

export interface PgLikeError {
  code?: string;
  message?: string;
  detail?: string;
  hint?: string;
  routine?: string;
}

export function sqlState(err: unknown): string | undefined {
  const code = (err as PgLikeError | undefined)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

export function isTransient(err: unknown): boolean {
  if (err instanceof WalbridgeError) return err.transient;
  const code = (err as PgLikeError | undefined)?.code;
  if (typeof code === 'string') {
    if (TRANSIENT_SQLSTATES.has(code)) return true;
    if (TRANSIENT_NODE_CODES.has(code)) return true;
  }
  const message = err instanceof Error ? err.message : String(err);
  // node-postgres reports a dead connection in words, not codes.
  return /Connection terminated|connection timeout|terminating connection|server closed the connection|timeout expired|socket hang up|not queryable|Client was closed|the database system is (starting up|shutting down|in recovery)/i.test(
    message,
  );
}

/** Normalise anything thrown into an Error whose message carries no secret. */
export function coerceError(err: unknown): Error {
  if (err instanceof Error) {
    const clean = redactSecrets(err.message);
    if (clean !== err.message) {
      try {
        err.message = clean;
      } catch {
        return new Error(clean, { cause: err });
      }
    }
    return err;
  }
  return new Error(redactSecrets(String(err)));
}

/** The one line an operator reads: message plus what to do. */
export function describeError(err: unknown): { kind: ErrorKind; message: string; hint: string | undefined } {
  if (err instanceof WalbridgeError) return { kind: err.kind, message: redactSecrets(err.message), hint: err.hint };
  const e = coerceError(err);
  const pg = err as PgLikeError;
  if (pg.code === '23514' && /^no partition of relation /.test(e.message)) {
    // A partition the source gained, not made on the target yet: every start makes those.
    return {
      kind: 'schema',
      message: `the target has no partition of table ${/"(.*)"/.exec(e.message)?.[1] ?? '?'} for a row the source stored in one: the source has a partition the target lacks`,
      hint: 'walbridge makes the partitions the source gains on the target (within seconds while streaming, and at every start): it retries by itself. If this stays, run walbridge schema (it makes missing partitions) and read its problems.',
    };
  }
  // Not pg's `detail`: it can quote a data row ("Failing row contains ..."), and this message
  // reaches the status page. The log line keeps it (see log.ts).
  return { kind: 'internal', message: e.message, hint: pg.hint ? redactSecrets(pg.hint) : undefined };
}
