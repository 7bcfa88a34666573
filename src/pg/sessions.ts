/**
 * The kinds of sessions walbridge opens, with their settings.
 */
import type pg from 'pg';
import { WalbridgeError, sqlState } from '../errors.js';
import { connect, describeEndpoint } from './connect.js';

/**
 * A target session that writes replicated rows. `session_replication_role = replica` keeps
 * the target's own triggers (an `updated_at = now()` trigger would change copied values) and
 * foreign-key checks (tables are copied in parallel, in any order) from firing, as native
 * logical replication does.
 */
export async function openTargetWriter(url: string, applicationName: string): Promise<pg.Client> {
  const client = await connect(url, { side: 'target', applicationName });
  try {
    await client.query('SET session_replication_role = replica');
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
