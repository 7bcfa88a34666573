/**
 * `walbridge verify [--table T]... [--json]`: prove the target holds what the source holds,
 * row by row, while the source keeps taking writes. Exit 0 when equal, 1 when different,
 * 2 when something could not be compared.
 */
import type pg from 'pg';
import { migrationTables } from '../tables/selection.js';
import { describeTableState } from '../tables/requests.js';
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { connect, describeEndpoint } from '../pg/connect.js';
import { displayTable } from '../pg/ident.js';
import { stateSql } from '../sql/state.js';
import { countViaApi } from '../verify/api.js';
import { verifyTables, type VerifyReport } from '../verify/verify.js';

export interface VerifyCommandOptions {
  tables: string[];
  json: boolean;
  maxDifferences: number;
  jobs: number;
  rangeRows: number;
  /** Also count the tables through Supabase's REST API (SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY). */
  viaApi: boolean;
  /** After cutover: compare the way back (the new database is the one written to). */
  reverse?: boolean;
}

export interface ApiComparison {
  table: string;
  apiRows: number | null;
  targetRows: number;
  equal: boolean;
  error?: string;
}

export function formatVerify(r: VerifyReport, header: string, api: ApiComparison[] = []): string {
  const lines = [header, ''];
  const w = Math.max(10, ...r.tables.map((t) => t.table.length));
  for (const t of r.tables) {
    const label = { equal: 'EQUAL', different: 'DIFFERENT', unstable: 'UNSTABLE', error: 'ERROR' }[t.status];
    const counts = t.status === 'error' ? (t.message ?? '') : `${t.rowsSource} rows on the source, ${t.rowsTarget} on the target, ${t.ranges} range(s)`;
    lines.push(`${label.padEnd(9)}  ${t.table.padEnd(w)}  ${counts}`);
    for (const d of t.differences) lines.push(`           ${d.kind.padEnd(17)} key (${d.key.join(', ')})`);
    if (t.moreDifferences > 0) lines.push(`           … and ${t.moreDifferences} more`);
    if (t.unstableRows > 0) lines.push(`           ${t.unstableRows} row(s) kept changing while compared: run verify again when writes calm down`);
  }
  if (api.length > 0) {
    lines.push('', "through Supabase's REST API (what the app saw), row counts against the target:");
    for (const a of api) {
      lines.push(
        `${(a.error ? 'ERROR' : a.equal ? 'EQUAL' : 'DIFFERENT').padEnd(9)}  ${a.table.padEnd(w)}  ${a.error ? a.error : `${a.apiRows} rows through the API, ${a.targetRows} on the target`}`,
      );
    }
  }
  const differing = r.tables.filter((t) => t.status === 'different').length + api.filter((a) => !a.error && !a.equal).length;
  lines.push(
    '',
    r.equal
      ? `result: the target holds the same rows as the source (${r.tables.length} table(s), ${r.seconds} s)`
      : differing > 0
        ? `result: ${differing} table(s) differ`
        : 'result: could not compare everything (see above)',
  );
  return lines.join('\n');
}

export async function verifyCommand(env: NodeJS.ProcessEnv, opts: VerifyCommandOptions): Promise<number> {
  const config = loadCommandConfig(env, { reverse: opts.reverse === true });
  if (!config) return 2;
  let source: pg.Client | null = null;
  try {
    source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge verify' });
    const target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge verify' });
    const migration = await migrationTables(source, target, config).finally(() => target.end().catch(() => {}));
    let tables = migration.tables;
    for (const t of migration.notStreaming) process.stderr.write(`not compared: ${t.schema}.${t.name} is ${describeTableState(t)}\n`);
    if (opts.tables.length > 0) {
      const unknown = opts.tables.filter((t) => !tables.some((x) => displayTable(x) === t || x.name === t));
      if (unknown.length > 0) {
        process.stderr.write(`not among the migrated tables: ${unknown.join(', ')} (write them as schema.table)\n`);
        return 2;
      }
      tables = tables.filter((x) => opts.tables.includes(displayTable(x)) || opts.tables.includes(x.name));
    }
    await source.end();
    source = null;
    const report = await verifyTables({
      sourceUrl: config.sourceUrl,
      targetUrl: config.targetUrl,
      stateSql: stateSql(config.stateSchema),
      tables,
      jobs: opts.jobs,
      maxDifferences: opts.maxDifferences,
      rangeRows: opts.rangeRows,
      conversions: config.conversions,
    });
    let api: ApiComparison[] = [];
    if (opts.viaApi) {
      const url = env.SUPABASE_URL;
      const key = env.SUPABASE_SERVICE_ROLE_KEY;
      if (!url || !key) {
        process.stderr.write('--via-api needs SUPABASE_URL (https://<project-ref>.supabase.co) and SUPABASE_SERVICE_ROLE_KEY (Project Settings → API)\n');
        return 2;
      }
      const counts = await countViaApi(url, key, tables);
      api = counts.map((c) => {
        const targetRows = report.tables.find((t) => t.table === c.table)?.rowsTarget ?? 0;
        return { table: c.table, apiRows: c.apiRows, targetRows, equal: c.apiRows === targetRows, ...(c.error ? { error: c.error } : {}) };
      });
    }
    if (opts.json) process.stdout.write(`${JSON.stringify(opts.viaApi ? { ...report, api } : report, null, 2)}\n`);
    else process.stdout.write(`${formatVerify(report, `walbridge verify: ${describeEndpoint(config.sourceUrl)} → ${describeEndpoint(config.targetUrl)}`, api)}\n`);
    if (report.tables.some((t) => t.status === 'different') || api.some((a) => !a.error && !a.equal)) return 1;
    return report.incomplete || api.some((a) => a.error) ? 2 : 0;
  } catch (err) {
    const d = describeError(err);
    process.stderr.write(`verify could not compare: ${d.message}${d.hint ? `\n${d.hint}` : ''}\n`);
    return 2;
  } finally {
    await source?.end().catch(() => {});
  }
}
