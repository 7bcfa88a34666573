/**
 * `walbridge teardown [--target]`: remove walbridge's slot, publication and TRUNCATE triggers
 * on partitions from the source (and with --target its state schema from the target). Run it
 * when a migration is finished or abandoned: a forgotten slot makes the source keep WAL until
 * its disk is full.
 * Idempotent, and safe from a laptop: it refuses to pull a slot from under a running daemon
 * unless told to with --force.
 */
import type pg from 'pg';
import { reverseConfig } from '../config.js';
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { connect, describeEndpoint } from '../pg/connect.js';
import { removePartitionTruncates } from '../pipeline/partition-truncates.js';
import { findPublication, findSlot } from '../pipeline/source-objects.js';
import { DROP_SLOT, dropPublication } from '../sql/source.js';
import { stateSql } from '../sql/state.js';
import { buildAllIndexesAgain } from '../backfill/indexes.js';
import { liftFence } from '../cutover/fence.js';
import { readFences } from '../state/fences.js';

export interface TeardownOptions {
  target: boolean;
  force: boolean;
  /** Lift the cutover's fence on the source: the app may write there again (and nothing carries those writes over). */
  liftFence?: boolean;
  /** After cutover: remove the way back (its slot and publication on the new database, its state on the old one). */
  reverse?: boolean;
}

export async function teardownCommand(env: NodeJS.ProcessEnv, opts: TeardownOptions): Promise<number> {
  const config = loadCommandConfig(env, { reverse: opts.reverse === true });
  if (!config) return 2;
  const say = (s: string) => process.stdout.write(`${s}\n`);
  let source: pg.Client | null = null;
  let target: pg.Client | null = null;
  try {
    source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge teardown' });
    const where = describeEndpoint(config.sourceUrl);
    const slot = await findSlot(source, config.slotName);
    if (!slot) {
      say(`source ${where}: no replication slot "${config.slotName}" (nothing to remove)`);
    } else if (slot.plugin !== 'pgoutput') {
      process.stderr.write(`the slot "${config.slotName}" on the source is not a walbridge slot (plugin ${slot.plugin ?? 'physical'}); left alone. Check WALBRIDGE_SLOT.\n`);
      return 1;
    } else {
      if (slot.active) {
        if (!opts.force) {
          process.stderr.write(
            `the slot "${config.slotName}" is in use right now (walsender pid ${slot.active_pid}): a walbridge daemon is probably running. ` +
              'Stop it first (or run cutover), or pass --force to disconnect it.\n',
          );
          return 1;
        }
        await source.query('SELECT pg_terminate_backend($1)', [slot.active_pid]);
        await waitInactive(source, config.slotName);
      }
      await source.query(DROP_SLOT, [config.slotName]);
      say(`source ${where}: dropped replication slot "${config.slotName}" (the source no longer keeps WAL for it)`);
    }
    if (await findPublication(source, config.publicationName)) {
      await source.query(dropPublication(config.publicationName));
      say(`source ${where}: dropped publication "${config.publicationName}"`);
    } else {
      say(`source ${where}: no publication "${config.publicationName}" (nothing to remove)`);
    }
    await sayRemovedTriggers(source, `source ${where}`, config.slotName, say);
    await sayOrLiftFence(source, `source ${where}`, config.slotName, opts.liftFence === true, say);
    if (opts.target) {
      target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge teardown' });
      const tw = describeEndpoint(config.targetUrl);
      // The reverse direction's slot and publication, if cutover prepared them, named as it names
      // them (reverseConfig: a long name is cut so that the suffix still fits in 63 characters).
      const reverse = reverseConfig(config);
      const reverseSlot = await findSlot(target, reverse.slotName);
      if (reverseSlot && !reverseSlot.active) {
        await target.query(DROP_SLOT, [reverse.slotName]);
        say(`target ${tw}: dropped replication slot "${reverse.slotName}"`);
      }
      if (await findPublication(target, reverse.publicationName)) {
        await target.query(dropPublication(reverse.publicationName));
        say(`target ${tw}: dropped publication "${reverse.publicationName}"`);
      }
      await sayRemovedTriggers(target, `target ${tw}`, reverse.slotName, say);
      // A rollback (cutover --reverse) left its fence on the new database.
      await sayOrLiftFence(target, `target ${tw}`, reverse.slotName, opts.liftFence === true, say);
      const state = stateSql(config.stateSchema);
      const { rows } = await target.query<{ exists: boolean; deferred: boolean }>(state.STATE_PRESENCE);
      if (rows[0]?.deferred) {
        // A copy was cut off with indexes set aside: they go back before the record of them does.
        const built = await buildAllIndexesAgain(target, state);
        if (built > 0) say(`target ${tw}: built again ${built} index(es) walbridge had set aside during the copy`);
      }
      if (rows[0]?.exists) {
        await target.query(state.DROP_STATE);
        say(`target ${tw}: dropped walbridge's state (schema ${config.stateSchema}); your tables and rows are untouched`);
      } else {
        say(`target ${tw}: no walbridge state (nothing to remove)`);
      }
    }
    return 0;
  } catch (err) {
    const d = describeError(err);
    process.stderr.write(`teardown failed: ${d.message}${d.hint ? `\n${d.hint}` : ''}\n`);
    return 1;
  } finally {
    await source?.end().catch(() => {});
    await target?.end().catch(() => {});
  }
}

/** walbridge's TRUNCATE triggers on partitions (pipeline/partition-truncates.ts), said only when there were some. */
async function sayRemovedTriggers(client: pg.Client, where: string, migration: string, say: (s: string) => void): Promise<void> {
  const { removed, left } = await removePartitionTruncates(client, migration);
  if (removed > 0) say(`${where}: removed walbridge's TRUNCATE trigger from ${removed} partition(s)`);
  if (left > 0) say(`${where}: ${left} partition(s) were busy and keep walbridge's TRUNCATE trigger (it only writes a message on TRUNCATE); run teardown again to remove it`);
}

/**
 * A cutover's fence stays unless asked: it is what keeps the app from writing by mistake to the
 * database it left, where nothing would carry those writes over any more. `where` names the
 * database ("source host:port/db").
 */
async function sayOrLiftFence(client: pg.Client, where: string, migration: string, lift: boolean, say: (s: string) => void): Promise<void> {
  const fence = (await readFences(client)).find((f) => f.migration === migration);
  if (!fence) {
    if (lift) say(`${where}: no fence (nothing to lift)`);
    return;
  }
  const since = fence.setAt.toISOString();
  const by = fence.direction === 'reverse' ? 'rollback' : 'cutover';
  if (!lift) {
    say(
      `${where}: the fence of the ${by} stays: writes to ${fence.tables.length} migrated table(s) are refused there since ${since}, ` +
        `so the app cannot write to the database it left by mistake. Lift it with "walbridge teardown --lift-fence" only if the app is to write there again.`,
    );
    return;
  }
  const lifted = await liftFence(client, migration);
  say(
    `${where}: fence lifted: ${lifted.length} table(s) take writes again. WARNING: nothing carries writes made there to the ` +
      'other database any more; point no app at it unless you mean it to be the one in use.',
  );
}

async function waitInactive(source: pg.Client, slotName: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const slot = await findSlot(source, slotName);
    if (!slot?.active) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the slot "${slotName}" is still in use after its walsender was terminated`);
}
