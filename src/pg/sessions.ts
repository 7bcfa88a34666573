/**
 * The kinds of sessions walbridge opens, with their settings.
 */
import type pg from 'pg';
import { WalbridgeError, sqlState } from '../errors.js';
import { connect, describeEndpoint } from './connect.js';

export interface TargetWriterSettings {
  /** Compress new TOASTed values with lz4 where the target has it (WALBRIDGE_TOAST_LZ4). */
  toastLz4: boolean;
}

/**
 * lz4 for the values this session TOASTs, where the server was built with it (PostgreSQL 14+;
 * Debian's and the official image's servers are): compressing a jsonb document of a few kB
 * with pglz costs several times the CPU lz4 does (npm run bench: the copy 1.11x faster with it,
 * the drain of rewritten documents 1.07x). Columns given a compression of their own keep it;
 * any server built with lz4 reads both. Where the server lacks it the query sets nothing.
 */
const TOAST_LZ4 = `SELECT set_config('default_toast_compression', 'lz4', false) FROM pg_catalog.pg_settings
 WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)`;

/**
 * A target session that writes replicated rows. `session_replication_role = replica` keeps
 * the target's own triggers (an `updated_at = now()` trigger would change copied values) and
 * foreign-key checks (tables are copied in parallel, in any order) from firing, as native
 * logical replication does.
 */
export async function openTargetWriter(url: string, applicationName: string, settings: TargetWriterSettings): Promise<pg.Client> {
  const client = await connect(url, { side: 'target', applicationName });
  try {
    await client.query(`SET session_replication_role = replica${settings.toastLz4 ? `; ${TOAST_LZ4}` : ''}`);
  } catch (err) {
    await client.end().catch(() => {});
    if (sqlState(err) === '42501') {
      throw new WalbridgeError('privilege', `the target role may not set session_replication_role on ${describeEndpoint(url)}`, {
        cause: err,
        hint:
          'Connect to the target as a superuser (Railway\'s postgres user is one): walbridge must keep the target\'s ' +
          'triggers and foreign-key checks from firing on replicated rows, as native replication does.',
      });
    }
    throw err;
  }
  return client;
}

export async function openSourceReader(url: string, applicationName: string): Promise<pg.Client> {
  return connect(url, { side: 'source', applicationName });
}
