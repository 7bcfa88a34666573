/**
 * Preflight of the declared conversions (WALBRIDGE_CONVERT): each is tried on a sample of the
 * column's real values before anything is written, so a value that cannot convert stops the
 * migration here, named by its key, and not in the middle of the copy.
 */
import type { TablePlan } from '../catalog/tables.js';
import type { ColumnConversion } from '../convert/conversions.js';
import { valueOf } from '../convert/value.js';
import { describeError } from '../errors.js';
import { displayTable, quoteIdent, quoteTable } from '../pg/ident.js';
import type { CheckResult, PreflightContext } from './context.js';

/** Values tried per converted column. */
const SAMPLE_ROWS = 200;

interface Sample {
  key: string;
  value: string;
}

/** The sample: non-NULL values (NULL stays NULL), with each row's key as text. */
function sampleSql(plan: TablePlan, column: string): string {
  const key = plan.source.primaryKey.length > 0 ? plan.source.primaryKey : ['ctid'];
  const keyText = `concat_ws(', ', ${key.map((k) => (k === 'ctid' ? 'ctid::text' : `${quoteIdent(k)}::text`)).join(', ')})`;
  return `SELECT ${keyText} AS key, ${quoteIdent(column)}::text AS value FROM ${quoteTable(plan)} WHERE ${quoteIdent(column)} IS NOT NULL LIMIT ${SAMPLE_ROWS}`;
}

export async function conversions({ source, target, comparison }: PreflightContext): Promise<CheckResult | null> {
  const converted = (comparison?.plans ?? []).flatMap((plan) =>
    [...plan.conversions].filter(([, c]) => c.kind !== 'drop').map(([column, c]) => ({ plan, column, conversion: c })),
  );
  const dropped = (comparison?.plans ?? []).flatMap((plan) => [...plan.conversions].filter(([, c]) => c.kind === 'drop').map(([column]) => `${displayTable(plan)}.${column}`));
  if (converted.length === 0 && dropped.length === 0) return null;
  const failures: string[] = [];
  const tried: string[] = [];
  for (const { plan, column, conversion } of converted) {
    const name = `${displayTable(plan)}.${column}`;
    const type = plan.targetColumns.find((c) => c.name === column)?.type ?? 'text';
    const sample = (await source.query<Sample>(sampleSql(plan, column))).rows;
    const bad = await firstFailure(target, conversion, type, sample);
    if (bad) failures.push(`${name} (${conversion.spec}): the row with key (${bad.key}) does not convert: ${bad.error}`);
    else tried.push(`${name} (${conversion.spec}, ${sample.length} value(s) tried)`);
  }
  if (failures.length > 0) {
    return {
      id: 'conversions',
      status: 'fail',
      message: `a declared conversion fails on real rows:\n  - ${failures.join('\n  - ')}`,
      fix: 'Fix those rows on the source, or declare another conversion for the column (WALBRIDGE_CONVERT, docs/conversions.md), or exclude the table.',
      kind: 'schema',
    };
  }
  return {
    id: 'conversions',
    status: 'pass',
    message: [tried.length > 0 ? `converted on the way: ${tried.join(', ')}` : '', dropped.length > 0 ? `left on the source (drop): ${dropped.join(', ')}` : ''].filter(Boolean).join('; '),
  };
}

/**
 * Convert the sample on the target, as the stream will, in a transaction rolled back: all at
 * once, and only if that fails, one by one to name the first row that does not convert.
 */
async function firstFailure(target: PreflightContext['target'], conversion: ColumnConversion, type: string, sample: Sample[]): Promise<{ key: string; error: string } | null> {
  if (sample.length === 0) return null;
  const column = { name: 'value', type, convert: conversion.toTarget };
  const all = `SELECT count(${valueOf(column, 'u.v')}) FROM unnest($1::text[]) AS u(v)`;
  const one = `SELECT ${valueOf(column, '$1::text')}`;
  await target.query('BEGIN READ ONLY');
  try {
    await target.query('SAVEPOINT sample');
    try {
      await target.query(all, [sample.map((s) => s.value)]);
      return null;
    } catch {
      await target.query('ROLLBACK TO SAVEPOINT sample');
    }
    for (const s of sample) {
      try {
        await target.query(one, [s.value]);
      } catch (err) {
        await target.query('ROLLBACK TO SAVEPOINT sample');
        return { key: s.key, error: describeError(err).message };
      }
    }
    return null;
  } finally {
    await target.query('ROLLBACK').catch(() => {});
  }
}
