/**
 * First start: record the intent on the target, create the publication and then the slot
 * (in that order: pgoutput reads the publication through the slot's historic snapshot, so a
 * publication younger than the slot "does not exist" for it), and record the slot's
 * consistent point as every table's copy LSN.
 *
 * An interrupted initialisation (phase 'init') is redone from the start: the slot's
 * exported snapshot died with the connection that made it.
 */
import type pg from 'pg';
import type { TablePlan } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { WalbridgeError, sqlState } from '../errors.js';
import type { Logger } from '../log.js';
import { formatLsn } from '../lsn.js';
import { ReplicationConnection, type CreatedSlot, type SystemIdentity } from '../pg/replication.js';
import { createPublication, DROP_SLOT, dropPublication as dropPublicationSql, setPublicationTables } from '../sql/source.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { migrateState } from '../state/migrate.js';
import { withTransaction } from '../pg/transaction.js';
import type { PipelineState } from '../state/store.js';
import { removePartitionTruncates } from './partition-truncates.js';
import { findPublication, findSlot } from './source-objects.js';

export interface InitContext {
  sourceUrl: string;
  slotName: string;
  publicationName: string;
  /** walbridge's state on the target, made here on a first start. */
  stateSql: StateSql;
  control: pg.Client;
  catalog: pg.Client;
  identity: SystemIdentity;
  plans: TablePlan[];
  log: Logger;
}

/** The exported snapshot: valid while `conn` stays open and idle. */
export interface ExportedSnapshot {
  conn: ReplicationConnection;
  slot: CreatedSlot;
}

export async function initialize(ctx: InitContext, existing: PipelineState | null): Promise<ExportedSnapshot> {
  const { control, catalog, log, stateSql: state } = ctx;
  const fresh = existing === null;
  if (fresh) {
    // Preflight has checked that the target tables are empty and the names free.
    await migrateState(control, state);
    await control.query(state.INSERT_PIPELINE, [ctx.identity.systemId, ctx.identity.database, ctx.slotName, ctx.publicationName]);
  }
  let createdPublication = false;
  let snapshot: ExportedSnapshot | null = null;
  try {
    const pub = await findPublication(catalog, ctx.publicationName);
    if (pub) {
      await catalog.query(setPublicationTables(ctx.publicationName, ctx.plans));
    } else {
      await catalog.query(createPublication(ctx.publicationName, ctx.plans));
      createdPublication = true;
    }
    log.info({ publication: ctx.publicationName, tables: ctx.plans.length }, 'publication ready');

    const leftover = await findSlot(catalog, ctx.slotName);
    if (leftover) {
      // Ours (the recorded intent says so), from an initialisation that was cut off.
      if (leftover.active) {
        throw new WalbridgeError('slot', `slot ${ctx.slotName} is in use by another connection (pid ${leftover.active_pid})`, {
          transient: true,
          hint: 'Another walbridge instance may still be starting; this one retries.',
        });
      }
      await catalog.query(DROP_SLOT, [ctx.slotName]);
    }
    const conn = await ReplicationConnection.open(ctx.sourceUrl, 'walbridge snapshot');
    try {
      await conn.identifySystem(ctx.sourceUrl);
      const slot = await conn.createSlot(ctx.slotName, { temporary: false });
      snapshot = { conn, slot };
    } catch (err) {
      await conn.close();
      throw explainSlotCreateError(err, ctx.slotName);
    }
    const consistent = formatLsn(snapshot.slot.consistentPoint);
    log.info({ slot: ctx.slotName, lsn: consistent }, 'replication slot created; copying under its snapshot');
    await withTransaction(control, async () => {
      for (const p of ctx.plans) {
        await control.query(state.UPSERT_TABLE, [p.schema, p.name, consistent, p.source.estimatedRows, p.source.bytes]);
      }
      await control.query(state.START_BACKFILL, [consistent]);
    });
    return snapshot;
  } catch (err) {
    if (snapshot) await snapshot.conn.close();
    if (fresh && !(err instanceof WalbridgeError && err.transient)) {
      // Leave nothing behind for a start that cannot succeed as configured.
      await undoInitialize(ctx, createdPublication).catch((e: unknown) => log.warn({ err: e }, 'could not undo a failed initialisation'));
    }
    throw err;
  }
}

async function undoInitialize(ctx: InitContext, dropPublication: boolean): Promise<void> {
  const slot = await findSlot(ctx.catalog, ctx.slotName);
  if (slot && !slot.active) await ctx.catalog.query(DROP_SLOT, [ctx.slotName]);
  if (dropPublication) await ctx.catalog.query(dropPublicationSql(ctx.publicationName));
  // Put on before initialising (pipeline/run.ts).
  await removePartitionTruncates(ctx.catalog, ctx.slotName);
  await ctx.control.query(ctx.stateSql.DROP_STATE);
}

function explainSlotCreateError(err: unknown, slotName: string): Error {
  const code = sqlState(err);
  const msg = err instanceof Error ? err.message : String(err);
  if (code === '53400') {
    return new WalbridgeError('source', `no free replication slot on the source: ${msg}`, {
      cause: err,
      hint:
        'Drop an unused slot (SELECT slot_name, active FROM pg_replication_slots;) or raise max_replication_slots. ' +
        'On Supabase the limit is small and Realtime may hold one.',
    });
  }
  if (code === '42710') {
    return new WalbridgeError('slot', `replication slot ${slotName} was created by someone else meanwhile`, { cause: err, transient: true });
  }
  return err instanceof Error ? err : new Error(msg);
}

/**
 * The way back (rollback window): no copy. The source of this direction is the migration's
 * target, where cutover recorded the point it happened at and created a slot there; every
 * change made after it is streamed back. The state is kept on this direction's target.
 */
export async function initializeReverse(ctx: {
  config: Config;
  control: pg.Client;
  catalog: pg.Client;
  identity: SystemIdentity;
  plans: TablePlan[];
  log: Logger;
}): Promise<void> {
  const { config, control, catalog } = ctx;
  // The forward migration's state (on this direction's source) and this direction's own: the
  // way back keeps the configured state schema (reverseConfig).
  const state = stateSql(config.stateSchema);
  const exists = await catalog.query<{ ok: boolean }>(state.CUTOVER_RECORDED);
  const cut = exists.rows[0]?.ok ? (await catalog.query<{ lsn: string; reverse_slot: string | null; reverse_lsn: string | null }>(state.SELECT_CUTOVER)).rows[0] : undefined;
  if (!cut) {
    throw new WalbridgeError('state', 'no cutover is recorded on the migration\'s target: the way back starts from a cutover', {
      hint: 'Run "walbridge cutover" first; "walbridge run --reverse" then replicates the new database back to the old one.',
    });
  }
  if (!cut.reverse_slot || !cut.reverse_lsn) {
    throw new WalbridgeError('state', 'the cutover could not keep a slot on the new database for the way back (it did not allow logical replication then)', {
      hint: 'A rollback now means migrating again in the other direction (walbridge with the two URLs swapped).',
    });
  }
  if (cut.reverse_slot !== config.slotName) {
    throw new WalbridgeError('config', `the cutover kept slot "${cut.reverse_slot}" for the way back, but this run uses "${config.slotName}"`, {
      hint: 'Use the same WALBRIDGE_SLOT as for the migration.',
    });
  }
  if (!(await findSlot(catalog, config.slotName))) {
    throw new WalbridgeError('slot', `the slot "${config.slotName}" kept for the way back no longer exists on the new database`, {
      hint: 'It was removed (teardown?). A rollback now means migrating again in the other direction.',
    });
  }
  await migrateState(control, state);
  await withTransaction(control, async () => {
    await control.query(state.INSERT_PIPELINE, [ctx.identity.systemId, ctx.identity.database, config.slotName, config.publicationName]);
    for (const p of ctx.plans) {
      await control.query(state.INSERT_COPIED_TABLE, [p.schema, p.name, cut.reverse_lsn, p.source.estimatedRows, p.source.bytes]);
    }
    await control.query(state.START_STREAMING_AT, [cut.reverse_lsn]);
  });
  ctx.log.info({ slot: config.slotName, lsn: cut.reverse_lsn }, 'the way back starts at the cutover point');
}
