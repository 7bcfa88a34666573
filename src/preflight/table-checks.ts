/**
 * Preflight checks of the selected tables: the selection itself, what publishing them does to
 * the source, whether the target's tables and extensions match, and how long the copy takes.
 */
import { replicaIdentityProblem, type SourceTable, type TableComparison } from '../catalog/tables.js';
import { describeError } from '../errors.js';
import { displayTable, quoteTable } from '../pg/ident.js';
import { planTargetSchema, type SchemaPlan } from '../schema/make.js';
import { TABLES_NOT_FENCEABLE } from '../sql/fence.js';
import { INSTALLED_EXTENSIONS } from '../sql/catalog.js';
import { EXTENSIONS_USED, TABLES_NOT_OWNED } from '../sql/source.js';
import { carriedElsewhere } from '../tables/groups.js';
import { mb, type CheckResult, type PreflightCheck, type PreflightContext, type TableEstimate } from './context.js';

/** A conservative copy rate for estimates, per copy job (COPY text, loopback measured ~85 MB/s). */
const ESTIMATED_COPY_BYTES_PER_SECOND = 30 * 1024 * 1024;

/** The $1 (schemas) and $2 (names) of the catalog queries that take a list of tables. */
const tableNames = (tables: SourceTable[]) => [tables.map((t) => t.schema), tables.map((t) => t.name)];

/** A check about the selected tables, run only when at least one was selected. */
type TableCheck = (ctx: PreflightContext, comparison: TableComparison) => CheckResult | null | Promise<CheckResult | null>;

/** The context's comparison exists exactly when tables were selected. */
export const forSelectedTables =
  (check: TableCheck): PreflightCheck =>
  (ctx) =>
    ctx.comparison ? check(ctx, ctx.comparison) : null;

export function tablesSelected({ config, selection }: PreflightContext): CheckResult {
  if ('error' in selection) {
    const d = describeError(selection.error);
    return { id: 'tables-selected', status: 'fail', message: d.message, fix: d.hint, kind: d.kind };
  }
  return { id: 'tables-selected', status: 'pass', message: `${selection.tables.length} table(s) selected in ${config.schemas.join(', ')}` };
}

export function replicaIdentity({ selection }: PreflightContext): CheckResult {
  const problem = replicaIdentityProblem(selection.tables);
  return problem
    ? { id: 'replica-identity', status: 'fail', message: problem.message, fix: problem.fix, kind: 'source' }
    : { id: 'replica-identity', status: 'pass', message: 'every selected table has a primary key or a replica identity' };
}

/**
 * pgoutput sends no TRUNCATE of a single partition through the root: walbridge puts a trigger
 * on each partition that reports it (pipeline/partition-truncates.ts), which only the
 * partition's owner (or a role with TRIGGER on it) may create, as for the fence.
 */
export async function partitions({ source, capacity: cap, selection }: PreflightContext): Promise<CheckResult | null> {
  const partitioned = selection.tables.filter((t) => t.kind === 'p');
  if (partitioned.length === 0) return null;
  const roots = new Set(partitioned.map(displayTable));
  const { rows } = await source.query<{ table: string; owner: string }>(TABLES_NOT_FENCEABLE, [partitioned.map(quoteTable)]);
  const refused = rows.filter((r) => !roots.has(r.table));
  if (refused.length === 0) {
    return {
      id: 'partitions',
      status: 'pass',
      message: `partitioned table(s) ${[...roots].join(', ')} are published through their root; a TRUNCATE of a single partition, which PostgreSQL does not send that way, reaches the target through walbridge's trigger on each partition`,
    };
  }
  return {
    id: 'partitions',
    status: 'warn',
    message:
      `role ${cap.role} may not create a trigger on partition(s) ${refused.map((r) => `${r.table} (owner ${r.owner})`).join(', ')}: a TRUNCATE of one of them alone would not reach the target ` +
      '(PostgreSQL does not send it through the root, and walbridge cannot put its trigger there to report it); changes to their rows do',
    fix: `Connect as their owner, or GRANT TRIGGER ON ${refused.map((r) => r.table).join(', ')} TO ${cap.role}; or, until cutover, empty such a partition with DELETE (or TRUNCATE the whole table).`,
  };
}

/**
 * Cutover fences the source with a trigger on every migrated table and partition, which only
 * their owner (or a role with TRIGGER on them) may create. Not a failure: the migration itself
 * runs without it, and cutover --no-fence does without the fence.
 */
export async function fenceable({ source, capacity: cap, selection }: PreflightContext): Promise<CheckResult> {
  const { rows } = await source.query<{ table: string; owner: string }>(TABLES_NOT_FENCEABLE, [selection.tables.map(quoteTable)]);
  if (rows.length === 0) {
    return { id: 'fence', status: 'pass', message: `role ${cap.role} may fence the selected tables at cutover (they refuse writes from then on)` };
  }
  return {
    id: 'fence',
    status: 'warn',
    message: `cutover cannot fence ${rows.map((r) => `${r.table} (owner ${r.owner})`).join(', ')}: role ${cap.role} may not create a trigger on them, so a write there after cutover would not be refused`,
    fix: `Connect as their owner, or GRANT TRIGGER ON ${rows.map((r) => r.table).join(', ')} TO ${cap.role}; or exclude them (WALBRIDGE_EXCLUDE_TABLES); or cut over with --no-fence (the app must be stopped then).`,
  };
}

export async function publicationPrivilege({ source, capacity: cap, sourceInfo, selection }: PreflightContext): Promise<CheckResult> {
  if (cap.superuser) return { id: 'publication-privilege', status: 'pass', message: `role ${cap.role} is a superuser on the source` };
  const { rows } = await source.query<{ table: string; owner: string }>(TABLES_NOT_OWNED, tableNames(selection.tables));
  if (rows.length > 0) {
    return {
      id: 'publication-privilege',
      status: 'fail',
      message: `role ${cap.role} does not own ${rows.map((r) => `${r.table} (owner ${r.owner})`).join(', ')}; CREATE PUBLICATION needs the tables' owner`,
      fix: `Connect as the owner, GRANT ${[...new Set(rows.map((r) => r.owner))].join(', ')} TO ${cap.role}, or exclude those tables.`,
      kind: 'privilege',
    };
  }
  return cap.can_create
    ? { id: 'publication-privilege', status: 'pass', message: `role ${cap.role} may create a publication for the selected tables` }
    : {
        id: 'publication-privilege',
        status: 'fail',
        message: `role ${cap.role} lacks CREATE on the source database, which CREATE PUBLICATION needs`,
        fix: `Run GRANT CREATE ON DATABASE ${sourceInfo.database} TO ${cap.role}; as the database owner.`,
        kind: 'privilege',
      };
}

/**
 * Table groups on one target (WALBRIDGE_GROUP): each table belongs to one. A table another
 * group's state carries would be copied and applied twice.
 */
export async function tableGroups({ config, target, reverse, selection }: PreflightContext): Promise<CheckResult | null> {
  if (reverse) return null;
  const problems = await carriedElsewhere(target, config.stateSchema, selection.tables);
  if (problems.length > 0) {
    return {
      id: 'table-groups',
      status: 'fail',
      message: `tables selected here are migrated by another walbridge on this target:\n  - ${problems.join('\n  - ')}`,
      fix: 'Give each table group its own tables: leave these out of WALBRIDGE_TABLES (or add them to WALBRIDGE_EXCLUDE_TABLES) for this group.',
      kind: 'config',
    };
  }
  if (config.group === null) return null;
  return { id: 'table-groups', status: 'pass', message: `table group ${config.group}: slot ${config.slotName}, publication ${config.publicationName}, state in schema ${config.stateSchema}; no selected table belongs to another group` };
}

export function targetTables({ selection }: PreflightContext, comparison: TableComparison): CheckResult {
  if (comparison.problems.length > 0) {
    return {
      id: 'target-tables',
      status: 'fail',
      message: `the target's tables do not match the source:\n  - ${comparison.problems.join('\n  - ')}`,
      fix: 'Run walbridge schema for missing tables (walbridge schema --dry-run shows what it runs), the statements above for the others, or exclude the tables (WALBRIDGE_EXCLUDE_TABLES); then start again.',
      kind: 'schema',
    };
  }
  if (comparison.warnings.length > 0) {
    return { id: 'target-tables', status: 'warn', message: `the target's tables match, with remarks:\n  - ${comparison.warnings.join('\n  - ')}`, fix: 'Check these columns on the target.' };
  }
  return { id: 'target-tables', status: 'pass', message: `all ${selection.tables.length} table(s) exist on the target with the same columns and types` };
}

/** How many lines of the schema plan preflight shows; --dry-run shows them all. */
const PLAN_LINES = 30;

/** What `walbridge schema` would do on the target, as a diff: the same plan, so both always agree. */
export async function targetSchema({ config, source, target, reverse, selection }: PreflightContext): Promise<CheckResult | null> {
  // The way back writes to the old database, which has held the tables all along.
  if (reverse) return null;
  let plan: SchemaPlan;
  try {
    plan = await planTargetSchema(source, target, config, 'keep', selection.tables);
  } catch (err) {
    // The plan is advice here: a catalog it cannot read must not keep the migration from starting.
    return { id: 'target-schema', status: 'warn', message: `could not work out what walbridge schema would make: ${describeError(err).message}`, fix: 'Run walbridge schema --dry-run to see the error in full.' };
  }
  const diff = [
    ...plan.problems.map((p) => `! ${p.message}`),
    ...plan.steps.filter((s, i, all) => all.findIndex((x) => x.kind === s.kind && x.name === s.name) === i).map((s) => `+ ${s.kind} ${s.name}`),
    ...plan.leftOut.map((l) => `- ${l.kind} ${l.name} (left out: ${l.reason})`),
  ];
  const shown = diff.length > PLAN_LINES ? [...diff.slice(0, PLAN_LINES), `… and ${diff.length - PLAN_LINES} more: walbridge schema --dry-run shows them all`] : diff;
  const body = `\n  ${shown.join('\n  ')}`;
  // Never a failure of its own: whatever blocks the migration, target-tables and extensions fail on it.
  if (plan.problems.length > 0) {
    return { id: 'target-schema', status: 'warn', message: `walbridge schema could not make the target's schema as it is (! a problem, + made, - left out):${body}`, fix: 'Fix the problems marked ! (walbridge schema --dry-run prints each with its fix), then run walbridge schema.' };
  }
  if (plan.steps.length > 0) {
    return { id: 'target-schema', status: 'warn', message: `walbridge schema would make (+) or leave out (-) on the target:${body}`, fix: 'Run walbridge schema (one transaction; walbridge schema --dry-run prints the SQL first). It leaves what exists as it is.' };
  }
  return {
    id: 'target-schema',
    status: 'pass',
    message: `the target has everything walbridge schema makes for the selected tables${plan.leftOut.length > 0 ? `; left out, as walbridge schema lists them:${body}` : ''}`,
  };
}

export async function extensions({ config, source, target, selection }: PreflightContext): Promise<CheckResult> {
  // A converted column (WALBRIDGE_CONVERT) needs nothing of its type on the target.
  const used = (await source.query<{ extension: string; schema: string; columns: string[] }>(EXTENSIONS_USED, tableNames(selection.tables))).rows
    .map((u) => ({ ...u, columns: u.columns.filter((c) => !config.conversions.has(c)) }))
    .filter((u) => u.columns.length > 0);
  const installed = new Set((await target.query<{ extname: string }>(INSTALLED_EXTENSIONS)).rows.map((r) => r.extname));
  const missing = used.filter((u) => !installed.has(u.extension));
  if (missing.length > 0) {
    return {
      id: 'extensions',
      status: 'fail',
      message: `extension(s) used by selected columns are not installed on the target: ${missing.map((m) => `${m.extension} (${m.columns.join(', ')})`).join('; ')}`,
      fix: `Run walbridge schema, which installs them in the schema they have on the source, or by hand on the target: ${missing.map((m) => `CREATE EXTENSION ${m.extension} WITH SCHEMA ${m.schema};`).join(' ')} Or exclude those tables.`,
      kind: 'schema',
    };
  }
  return { id: 'extensions', status: 'pass', message: used.length > 0 ? `extensions used by the tables exist on the target: ${used.map((u) => u.extension).join(', ')}` : 'the selected tables use no extension types' };
}

export function copyEstimate({ config, tables }: PreflightContext): CheckResult {
  const total = tables.reduce((a, t) => a + t.bytes, 0);
  return {
    id: 'copy-estimate',
    status: 'pass',
    message: `${tables.length} table(s), ${mb(total)}, about ${tables.reduce((a, t) => a + t.estimatedRows, 0)} rows; the copy should take about ${Math.ceil(copySeconds(tables, config.copyJobs))} s with ${config.copyJobs} job(s)`,
  };
}

export function estimates(tables: SourceTable[]): TableEstimate[] {
  return [...tables]
    .sort((a, b) => b.bytes - a.bytes)
    .map((t) => ({ table: displayTable(t), estimatedRows: t.estimatedRows, bytes: t.bytes, expectedCopySeconds: Math.round((10 * t.bytes) / ESTIMATED_COPY_BYTES_PER_SECOND) / 10 }));
}

/** Largest first over `jobs` workers: the longest table, or the total spread over the workers. */
function copySeconds(tables: TableEstimate[], jobs: number): number {
  const workers = new Array<number>(Math.max(1, jobs)).fill(0);
  for (const t of tables) {
    const i = workers.indexOf(Math.min(...workers));
    workers[i] = (workers[i] ?? 0) + t.expectedCopySeconds;
  }
  return Math.max(...workers);
}
