/**
 * Opening connections to the source and the target.
 *
 * Every session gets the same output settings the native apply worker uses
 * (ISO dates, UTC, shortest-exact floats, hex bytea), so text produced by one server is
 * read back by the other unchanged. Errors are translated into what the operator must
 * check: a Supabase direct host that is IPv6-only, a wrong password, a missing database.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { WalbridgeError } from '../errors.js';
import { redactSecrets } from '../redact.js';

export type Side = 'source' | 'target';

/** Session settings that make every value's text form portable between servers. */
const PORTABLE_OUTPUT =
  '-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 -c timezone=UTC -c bytea_output=hex ' +
  // Apply statements carry values as '...' literals: backslashes must be plain characters.
  '-c standard_conforming_strings=on ' +
  // Supabase sets statement timeouts on some roles; a copy or a long apply must not be cut off.
  '-c statement_timeout=0 -c lock_timeout=0 -c idle_in_transaction_session_timeout=0';

export interface ConnectOptions {
  side: Side;
  /** Shown in pg_stat_activity so operators can tell walbridge's sessions apart. */
  applicationName: string;
  replication?: boolean;
  connectTimeoutMs?: number;
}

const LOCAL_HOST = /^(localhost|127\.\d+\.\d+\.\d+|::1|\[::1\])$/i;
const PRIVATE_NETWORK_HOST = /\.railway\.internal$/i;

/** TLS for any non-local host unless the URL says otherwise (Supabase requires it). */
export function tlsFor(url: URL): pg.ClientConfig['ssl'] {
  const mode = url.searchParams.get('sslmode');
  const host = url.hostname;
  switch (mode) {
    case 'disable':
      return false;
    case 'verify-ca':
    case 'verify-full': {
      const ca = url.searchParams.get('sslrootcert');
      return { rejectUnauthorized: true, ...(ca ? { ca: readFileSync(ca, 'utf8') } : {}) };
    }
    case 'require':
    case 'prefer':
    case 'allow':
      return { rejectUnauthorized: false };
    default:
      if (LOCAL_HOST.test(host) || PRIVATE_NETWORK_HOST.test(host)) return false;
      // Encrypted without certificate pinning, as libpq's sslmode=require: Supabase's
      // certificates chain to its own CA, which a stock Node does not trust.
      return { rejectUnauthorized: false };
  }
}

export function clientConfig(url: string, opts: ConnectOptions): pg.ClientConfig {
  const u = new URL(url);
  const ssl = tlsFor(u);
  // We decide TLS ourselves; pg would otherwise reinterpret sslmode=require as verify-full.
  for (const p of ['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'uselibpqcompat']) u.searchParams.delete(p);
  const config: pg.ClientConfig = {
    connectionString: u.toString(),
    ssl,
    application_name: opts.applicationName,
    options: PORTABLE_OUTPUT,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 15_000,
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
  if (opts.replication) (config as pg.ClientConfig & { replication: string }).replication = 'database';
  return config;
}

/** Host and database for messages: never the user's password or full URL. */
export function describeEndpoint(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || '5432'}/${decodeURIComponent(u.pathname.slice(1)) || 'postgres'}`;
  } catch {
    return '(unparseable URL)';
  }
}

export async function connect(url: string, opts: ConnectOptions): Promise<pg.Client> {
  const client = new pg.Client(clientConfig(url, opts));
  // An idle client whose server goes away emits 'error'; without a listener Node would
  // crash the process. The next query on it fails and is handled by its caller.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw explainConnectError(err, url, opts.side);
  }
  return client;
}

/** Turn a driver's connect error into one that says what to check. */
export function explainConnectError(err: unknown, url: string, side: Side): WalbridgeError {
  const where = `${side} database ${describeEndpoint(url)}`;
  const e = err as { code?: string; message?: string; address?: string };
  const msg = redactSecrets(e?.message ?? String(err));
  const host = (() => {
    try {
      return new URL(url).hostname;
    } catch {
      return '';
    }
  })();
  const envVar = side === 'source' ? 'SOURCE_DATABASE_URL' : 'TARGET_DATABASE_URL';
  switch (e?.code) {
    case '28P01':
    case '28000':
      return new WalbridgeError('auth', `cannot log in to the ${where}: ${msg}`, {
        cause: err,
        hint: `Check the user name and password in ${envVar} (on Supabase: Project Settings → Database → reset the database password).`,
      });
    case '3D000':
      return new WalbridgeError('config', `the ${where} does not exist: ${msg}`, {
        cause: err,
        hint: `Fix the database name at the end of ${envVar}.`,
      });
    case 'ENOTFOUND':
      return new WalbridgeError('connection', `cannot resolve the host of the ${where}`, {
        cause: err,
        transient: false,
        hint: `Check the host name in ${envVar}.` + (host.endsWith('.supabase.co') ? ' Supabase direct hosts look like db.<project-ref>.supabase.co.' : ''),
      });
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'EHOSTUNREACH':
      if (host.endsWith('.supabase.co') || (e.address ?? '').includes(':')) {
        return new WalbridgeError('connection', `cannot reach the ${where} over IPv6 (${e.code})`, {
          cause: err,
          transient: true,
          hint:
            "Supabase's direct host is IPv6-only. On Railway enable outbound IPv6 for this service (Settings → Networking), " +
            "or buy Supabase's IPv4 add-on (Project Settings → Add-ons) so the host also has an IPv4 address.",
        });
      }
      break;
    case 'ECONNREFUSED':
      return new WalbridgeError('connection', `the ${where} refused the connection`, {
        cause: err,
        transient: true,
        hint: `Check the host and port in ${envVar} and that the server is running.`,
      });
    default:
      break;
  }
  if (/does not support SSL/i.test(msg)) {
    return new WalbridgeError('connection', `the ${where} does not accept TLS`, {
      cause: err,
      hint: `Add ?sslmode=disable to ${envVar} if this server is on a private network.`,
    });
  }
  if (/timeout/i.test(msg)) {
    return new WalbridgeError('connection', `timed out connecting to the ${where}`, {
      cause: err,
      transient: true,
      hint:
        `Check that ${envVar} is reachable from here.` +
        (host.endsWith('.supabase.co') ? " Supabase's direct host is IPv6-only: enable outbound IPv6 on Railway or Supabase's IPv4 add-on." : ''),
    });
  }
  return new WalbridgeError('connection', `cannot connect to the ${where}: ${msg}`, { cause: err, transient: true });
}
