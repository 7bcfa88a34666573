/**
 * Partitions the source gains while walbridge runs (a monthly job, pg_partman's premade ones),
 * made on the target under the parent it already has. Without one, the target cannot place a row
 * the source put there: the apply stops ("no partition of relation … found for row"), or the
 * parent's DEFAULT partition takes the row and then keeps the partition from being made. So every
 * start, and the table changer while streaming (between two source transactions), make them;
 * rows a DEFAULT partition took meanwhile move into the new partition in the same transaction.
 */
import type pg from 'pg';
import type { SourceTable } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { describeError, WalbridgeError } from '../errors.js';
import { withTransaction } from '../pg/transaction.js';
import { DEFAULT_PARTITION, INSERTABLE_COLUMNS, MISSING_RELATIONS, SOURCE_PARTITIONS } from '../sql/schema.js';
import { APPLY_PREAMBLE } from './ddl.js';
import { planTargetSchema } from './make.js';

interface SourcePartition {
  /** `schema.name`, as walbridge schema names its steps. */
  name: string;
  quoted: string;
  /** Quoted. */
  parent: string;
  /** The condition its bound puts on a row, qualified. */
  rowConstraint: string;
}

/** The partitions of the partitioned tables among `tables` that the target lacks, parents first. */
export async function missingPartitions(source: pg.ClientBase, target: pg.ClientBase, tables: SourceTable[]): Promise<SourcePartition[]> {
  const roots = tables.filter((t) => t.kind === 'p');
  if (roots.length === 0) return [];
  const all = (await source.query<SourcePartition>(SOURCE_PARTITIONS, [roots.map((r) => r.oid)])).rows;
  if (all.length === 0) return [];
  const missing = new Set((await target.query<{ name: string }>(MISSING_RELATIONS, [all.map((p) => p.quoted)])).rows.map((r) => r.name));
  return all.filter((p) => missing.has(p.quoted));
}

/**
 * Makes on the target the partitions of `tables` it lacks, as walbridge schema makes them (with
 * their own indexes, triggers, comments), in one transaction of `target`: the apply's session,
 * between two source transactions, so no row is applied meanwhile. Returns what it made.
 */
export async function makeMissingPartitions(source: pg.ClientBase, target: pg.ClientBase, config: Config, tables: SourceTable[]): Promise<string[]> {
  const missing = await missingPartitions(source, target, tables);
  if (missing.length === 0) return [];
  const plan = await planTargetSchema(source, target, config, 'keep', tables.filter((t) => t.kind === 'p'));
  const made = missing.map((p) => p.name);
  const steps = plan.steps.filter((s) => made.some((m) => s.name === m || s.name.startsWith(`${m}.`)));
  if (!steps.some((s) => s.kind === 'partition')) {
    throw new WalbridgeError('schema', `the source has partition(s) ${made.join(', ')} that the target lacks, and walbridge schema cannot make them:\n  - ${plan.problems.map((p) => p.message).join('\n  - ')}`, {
      hint: 'Run walbridge schema --dry-run to see why; create them on the target, then walbridge continues by itself.',
    });
  }
  await withTransaction(target, async () => {
    for (const sql of APPLY_PREAMBLE) await target.query(sql);
    // Rows of the new partitions' ranges that a DEFAULT partition took on the target, set aside.
    const moved: { parent: string; table: string }[] = [];
    for (const [i, p] of missing.entries()) {
      const [fallback] = (await target.query<{ name: string }>(DEFAULT_PARTITION, [p.parent])).rows;
      if (!fallback) continue;
      const table = `walbridge_moved_${i}`;
      const taken = await target.query(`CREATE TEMP TABLE ${table} ON COMMIT DROP AS SELECT * FROM ${fallback.name} WHERE ${p.rowConstraint}`);
      if ((taken.rowCount ?? 0) === 0) continue;
      await target.query(`DELETE FROM ${fallback.name} WHERE ${p.rowConstraint}`);
      moved.push({ parent: p.parent, table });
    }
    for (const step of steps) {
      try {
        await target.query(step.sql);
      } catch (err) {
        throw new WalbridgeError('schema', `could not make ${step.kind} ${step.name} on the target, a partition the source gained: ${describeError(err).message}`, {
          cause: err,
          hint: `Run walbridge schema --dry-run to see the statement; create it on the target yourself, then walbridge continues by itself.`,
        });
      }
    }
    for (const m of moved) {
      const columns = (await target.query<{ name: string }>(INSERTABLE_COLUMNS, [m.parent])).rows.map((c) => c.name).join(', ');
      await target.query(`INSERT INTO ${m.parent} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM pg_temp.${m.table}`);
    }
  });
  return made;
}
