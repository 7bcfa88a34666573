/**
 * `walbridge schema` end to end: read the selection on the source, read the target, plan,
 * and apply the plan in one transaction (all of it, or nothing on a failure).
 */
import type pg from 'pg';
import { resolveSelection, type SourceTable } from '../catalog/tables.js';
import type { Config } from '../config.js';
import { describeError, WalbridgeError } from '../errors.js';
import { displayTable } from '../pg/ident.js';
import { withTransaction } from '../pg/transaction.js';
import { APPLY_PREAMBLE } from './ddl.js';
import { planSchema, type PolicyChoice, type SchemaPlan } from './plan.js';
import { readSourceSchema } from './read.js';
import { readTargetFacts } from './target.js';

export type { SchemaPlan, PolicyChoice } from './plan.js';

/**
 * The plan for the configured selection; reads both sides, writes nothing. `selected`: the
 * selection when the caller resolved it already (preflight).
 */
export async function planTargetSchema(
  source: pg.ClientBase,
  target: pg.ClientBase,
  config: Pick<Config, 'schemas' | 'includeTables' | 'excludeTables' | 'conversions'>,
  policies: PolicyChoice,
  selected?: SourceTable[],
): Promise<SchemaPlan> {
  selected ??= await resolveSelection(source, config);
  const src = await readSourceSchema(
    source,
    selected.map((t) => t.oid),
    config.schemas,
  );
  const facts = await readTargetFacts(target, src.tables.map(displayTable));
  return planSchema(src, facts, { schemas: config.schemas, policies, conversions: config.conversions });
}

/** The plan's statements as they run: one transaction, so psql can run a --dry-run's output as it is. */
export function planScript(plan: SchemaPlan): string[] {
  return ['BEGIN;', ...APPLY_PREAMBLE, ...plan.steps.map((s) => s.sql), 'COMMIT;'];
}

/** Run every step in one transaction; a failing step rolls all of them back. */
export async function applySchemaPlan(target: pg.ClientBase, plan: SchemaPlan, onStep?: (done: number, total: number) => void): Promise<void> {
  if (plan.steps.length === 0) return;
  await withTransaction(target, async () => {
    for (const sql of APPLY_PREAMBLE) await target.query(sql);
    for (const [i, step] of plan.steps.entries()) {
      try {
        await target.query(step.sql);
      } catch (err) {
        const d = describeError(err);
        throw new WalbridgeError('schema', `could not create ${step.kind} ${step.name} on the target: ${d.message}`, {
          cause: err,
          hint: `Nothing was created (the whole schema is one transaction). Run walbridge schema --dry-run to see the statement; fix the cause on the target, or exclude the table, then run it again.`,
        });
      }
      onStep?.(i + 1, plan.steps.length);
    }
  });
}
