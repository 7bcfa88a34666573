/**
 * `walbridge schema [--dry-run] [--json] [--policies keep|drop]`: make on the target what the
 * selected tables need, from the source's catalogs, and nothing of Supabase's platform. Exit 0
 * when done (or nothing to do), 1 when a problem stops it (nothing is written then), 2 for a bad
 * configuration.
 */
import type pg from 'pg';
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { connect, describeEndpoint } from '../pg/connect.js';
import { applySchemaPlan, planScript, planTargetSchema, type PolicyChoice, type SchemaPlan } from '../schema/make.js';

export interface SchemaOptions {
  dryRun: boolean;
  json: boolean;
  policies: PolicyChoice;
  /** After cutover: make on the old database what the way back needs (the new database is the source). */
  reverse: boolean;
}

/** What `--json` prints. */
export interface SchemaReport extends SchemaPlan {
  ok: boolean;
  applied: boolean;
}

export async function schemaCommand(env: NodeJS.ProcessEnv, opts: SchemaOptions): Promise<number> {
  const config = loadCommandConfig(env, { reverse: opts.reverse });
  if (!config) return 2;
  const out = (s: string) => process.stdout.write(`${s}\n`);
  const clients: pg.Client[] = [];
  try {
    const source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge schema' });
    clients.push(source);
    const target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge schema' });
    clients.push(target);
    const plan = await planTargetSchema(source, target, config, opts.policies);
    const ok = plan.problems.length === 0;
    const apply = ok && !opts.dryRun && plan.steps.length > 0;
    if (!opts.json) out(`walbridge schema: source ${describeEndpoint(config.sourceUrl)} → target ${describeEndpoint(config.targetUrl)}, schemas ${config.schemas.join(', ')}`);
    if (apply) {
      await applySchemaPlan(target, plan, (done, total) => {
        if (!opts.json && total >= 200 && done % 100 === 0) out(`  ${done}/${total} statements`);
      });
    }
    if (opts.json) {
      const report: SchemaReport = { ok, applied: apply, ...plan };
      out(JSON.stringify(report, null, 2));
    } else {
      out(formatSchemaReport(plan, { dryRun: opts.dryRun, applied: apply, reverse: opts.reverse }));
    }
    return ok ? 0 : 1;
  } catch (err) {
    const d = describeError(err);
    if (opts.json) out(JSON.stringify({ ok: false, applied: false, steps: [], present: [], leftOut: [], problems: [{ message: d.message, fix: d.hint ?? '' }] }, null, 2));
    else process.stderr.write(`${d.message}\n${d.hint ? `${d.hint}\n` : ''}`);
    return d.kind === 'config' || d.kind === 'connection' || d.kind === 'auth' || d.kind === 'pooler' ? 2 : 1;
  } finally {
    await Promise.all(clients.map((c) => c.end().catch(() => {})));
  }
}

const indent = (s: string, by: string) => s.split('\n').map((l) => by + l).join('\n');

/**
 * Text for people. A dry run prints the script itself, with everything else as SQL comments, so
 * its output can be read, kept or run with psql as it is.
 */
export function formatSchemaReport(plan: SchemaPlan, opts: { dryRun: boolean; applied: boolean; reverse?: boolean }): string {
  const lines: string[] = [];
  const note = opts.dryRun ? (s: string) => indent(s, '-- ') : (s: string) => s;
  if (plan.problems.length > 0) {
    lines.push(note(`${plan.problems.length} problem(s); nothing ${opts.dryRun ? 'would be' : 'was'} written to the target:`));
    for (const p of plan.problems) lines.push(note(`FAIL  ${p.message}\n      fix: ${p.fix}`));
    lines.push('');
  }
  if (opts.dryRun && plan.problems.length === 0 && plan.steps.length > 0) {
    lines.push(note('The statements walbridge schema runs on the target, in this order, in one transaction:'), '', ...planScript(plan), '');
  } else if (opts.applied) {
    lines.push('created on the target:');
    for (const s of plan.steps) lines.push(`  ${s.kind.padEnd(16)} ${s.name}`);
    lines.push('');
  }
  if (plan.leftOut.length > 0) {
    lines.push(note(`left out (cannot come across as it is), ${plan.leftOut.length}:`));
    for (const l of plan.leftOut) lines.push(note(`  ${l.kind} ${l.name}: ${l.reason}\n      choice: ${l.choice}`));
    lines.push('');
  }
  if (plan.present.length > 0) {
    const byKind = new Map<string, string[]>();
    for (const p of plan.present) byKind.set(p.kind, [...(byKind.get(p.kind) ?? []), p.name]);
    lines.push(note(`already on the target, left as they are:\n${[...byKind].map(([kind, names]) => `  ${kind}: ${names.join(', ')}`).join('\n')}`), '');
  }
  const result =
    plan.problems.length > 0
      ? `result: ${plan.problems.length} problem(s) to fix first (see above); the target is unchanged`
      : plan.steps.length === 0
        ? 'result: nothing to do, the target has everything the selected tables need'
        : opts.dryRun
          ? `result: ${plan.steps.length} statement(s) would run; run walbridge schema${opts.reverse ? ' --reverse' : ''} without --dry-run to apply them`
          : opts.reverse
            ? `result: ${plan.steps.length} statement(s) applied on the old database in one transaction; next: walbridge tables add --reverse <table> --wait for each table it made`
            : `result: ${plan.steps.length} statement(s) applied in one transaction; next: walbridge preflight, then start walbridge`;
  lines.push(note(result));
  return lines.join('\n');
}
