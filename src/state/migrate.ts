/**
 * Bringing walbridge's state on the target to the schema this walbridge writes
 * (sql/migrations.ts): the steps it lacks run in order, in one transaction with their records,
 * under a lock (a deploy overlaps two instances). A state written by a newer walbridge is
 * refused: this one would misread it, or undo what the newer one relies on.
 */
import type pg from 'pg';
import { WalbridgeError } from '../errors.js';
import { LATEST_STATE_VERSION, stateMigrations } from '../sql/migrations.js';
import type { StateSql } from '../sql/state.js';
import { withTransaction } from '../pg/transaction.js';

export interface Migrated {
  from: number;
  to: number;
}

function newerStateError(version: number): WalbridgeError {
  return new WalbridgeError(
    'state',
    `walbridge's state on the target is at version ${version}, written by a newer walbridge; this one knows versions up to ${LATEST_STATE_VERSION}`,
    {
      hint: 'Run the walbridge release that wrote it (or a later one): redeploy the newer image. To abandon this migration instead, run "walbridge teardown --target" with that release.',
    },
  );
}

/** Create or upgrade the state (in state.schema); returns the versions before and after. */
export async function migrateState(client: pg.ClientBase, state: StateSql): Promise<Migrated> {
  const { CREATE_MIGRATIONS_TABLE, LOCK_MIGRATIONS, MIGRATIONS, RECORD_MIGRATION, STATE_VERSION } = stateMigrations(state.schema);
  return withTransaction(client, async () => {
    await client.query(LOCK_MIGRATIONS);
    await client.query(CREATE_MIGRATIONS_TABLE);
    const from = Number((await client.query<{ version: number }>(STATE_VERSION)).rows[0]?.version ?? 0);
    if (from > LATEST_STATE_VERSION) throw newerStateError(from);
    for (const step of MIGRATIONS) {
      if (step.version <= from) continue;
      await client.query(step.sql);
      await client.query(RECORD_MIGRATION, [step.version, step.name]);
    }
    return { from, to: Math.max(from, LATEST_STATE_VERSION) };
  });
}

/**
 * The version of the state on the target, which must be one this walbridge knows (before it
 * writes to a state it did not create, as cutover does). Null when there is no state; 0 for a
 * state made before versions.
 */
export async function checkStateVersion(client: pg.ClientBase, state: StateSql): Promise<number | null> {
  const { STATE_KIND, STATE_VERSION } = stateMigrations(state.schema);
  const kind = (await client.query<{ versioned: boolean; unversioned: boolean }>(STATE_KIND)).rows[0];
  if (!kind?.versioned) return kind?.unversioned ? 0 : null;
  const version = Number((await client.query<{ version: number }>(STATE_VERSION)).rows[0]?.version ?? 0);
  if (version > LATEST_STATE_VERSION) throw newerStateError(version);
  return version;
}
