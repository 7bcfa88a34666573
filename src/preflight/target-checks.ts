/**
 * Preflight checks of the target as a whole: the role's right to write replicated rows, the
 * way back after cutover, and that it is not the source itself.
 */
import { describeError } from '../errors.js';
import { SYSTEM_IDENTIFIER } from '../sql/catalog.js';
import { PROBE_REPLICA_ROLE } from '../sql/preflight.js';
import type { CheckResult, PreflightContext } from './context.js';

export async function targetRole({ target }: PreflightContext): Promise<CheckResult> {
  try {
    await target.query('BEGIN');
    await target.query(PROBE_REPLICA_ROLE);
    return { id: 'target-role', status: 'pass', message: 'the target role may disable triggers and foreign-key checks for replicated rows' };
  } catch (err) {
    return {
      id: 'target-role',
      status: 'fail',
      message: `the target role may not SET session_replication_role (${describeError(err).message})`,
      fix: "Connect to the target as a superuser (Railway's postgres user is one): the target's triggers and foreign-key checks must not fire on replicated rows, as with native replication.",
      kind: 'privilege',
    };
  } finally {
    await target.query('ROLLBACK').catch(() => {});
  }
}

export function rollbackWindow({ reverse, targetInfo }: PreflightContext): CheckResult | null {
  if (reverse) return null;
  return targetInfo?.wal_level === 'logical'
    ? { id: 'rollback-window', status: 'pass', message: 'the target allows logical replication: cutover keeps a way back (walbridge run --reverse)' }
    : {
        id: 'rollback-window',
        status: 'warn',
        message: `the target has wal_level = ${targetInfo?.wal_level}: after cutover, writes made on it cannot be replicated back to the source (no rollback window)`,
        fix: 'To keep the source as a warm fallback, set wal_level = logical on the target before cutover (ALTER SYSTEM SET wal_level = logical; then restart it).',
      };
}

export async function distinctDatabases({ target, identity, sourceInfo, targetInfo }: PreflightContext): Promise<CheckResult> {
  let sameCluster = false;
  try {
    const sid = (await target.query<{ system_id: string }>(SYSTEM_IDENTIFIER)).rows[0]?.system_id;
    sameCluster = sid !== undefined && sid === identity?.systemId && targetInfo?.database === sourceInfo.database;
  } catch {
    // not allowed to read the system identifier: the URL comparison at start has to do
  }
  return sameCluster
    ? { id: 'distinct-databases', status: 'fail', message: 'SOURCE_DATABASE_URL and TARGET_DATABASE_URL reach the same database', fix: 'Point TARGET_DATABASE_URL at the new database.', kind: 'config' }
    : { id: 'distinct-databases', status: 'pass', message: 'source and target are different databases' };
}
