/**
 * `walbridge preflight [--json]`: what would go wrong, before anything is written. Read-only
 * on both databases. Exit 0 when nothing fails (warnings allowed), 1 when a check fails.
 */
import type pg from 'pg';
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { connect, describeEndpoint } from '../pg/connect.js';
import { ReplicationConnection, type SystemIdentity } from '../pg/replication.js';
import { runPreflight, type CheckResult, type PreflightReport } from '../preflight/checks.js';
import { stateSql } from '../sql/state.js';
import { loadPipeline } from '../state/store.js';

const LABEL: Record<CheckResult['status'], string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' };

export function formatPreflight(report: PreflightReport, header: string): string {
  const lines = [header, ''];
  for (const c of report.checks) {
    const [first, ...rest] = c.message.split('\n');
    lines.push(`${LABEL[c.status]}  ${c.id.padEnd(22)} ${first ?? ''}`);
    for (const r of rest) lines.push(`${' '.repeat(29)}${r}`);
    if (c.status !== 'pass' && c.fix) lines.push(`${' '.repeat(29)}fix: ${c.fix}`);
  }
  if (report.tables.length > 0) {
    lines.push('', 'tables, largest first (estimates from the source\'s statistics):');
    const w = Math.max(...report.tables.map((t) => t.table.length));
    for (const t of report.tables) {
      lines.push(`  ${t.table.padEnd(w)}  ${String(t.estimatedRows).padStart(12)} rows  ${(t.bytes / 1024 / 1024).toFixed(1).padStart(9)} MB  ~${t.expectedCopySeconds} s`);
    }
  }
  const failed = report.checks.filter((c) => c.status === 'fail').length;
  const warned = report.checks.filter((c) => c.status === 'warn').length;
  lines.push(
    '',
    failed > 0
      ? `result: ${failed} problem(s) to fix before walbridge can run${warned ? `, ${warned} warning(s)` : ''}`
      : `result: ready to migrate${warned ? ` (${warned} warning(s) above)` : ''}`,
  );
  return lines.join('\n');
}

export async function preflightCommand(env: NodeJS.ProcessEnv, opts: { json: boolean; sampleSeconds: number }): Promise<number> {
  // The migration's checks, whatever WALBRIDGE_REVERSE says: they include what the way back will need.
  const config = loadCommandConfig(env, { reverse: false });
  if (!config) return 2;
  const clients: pg.Client[] = [];
  try {
    const connectOrReport = async (url: string, side: 'source' | 'target'): Promise<pg.Client | CheckResult> => {
      try {
        const c = await connect(url, { side, applicationName: 'walbridge preflight' });
        clients.push(c);
        return c;
      } catch (err) {
        const d = describeError(err);
        return { id: `${side}-connection`, status: 'fail', message: d.message, ...(d.hint ? { fix: d.hint } : {}) };
      }
    };
    const [source, target] = await Promise.all([connectOrReport(config.sourceUrl, 'source'), connectOrReport(config.targetUrl, 'target')]);
    let report: PreflightReport;
    if ('id' in source || 'id' in target) {
      report = { ok: false, checks: [source, target].filter((x): x is CheckResult => 'id' in x), tables: [], plans: [] };
    } else {
      let identity: SystemIdentity | null = null;
      let identityError: unknown = null;
      try {
        const repl = await ReplicationConnection.open(config.sourceUrl, 'walbridge preflight');
        try {
          identity = await repl.identifySystem(config.sourceUrl);
        } finally {
          await repl.close();
        }
      } catch (err) {
        identityError = err;
      }
      try {
        const state = await loadPipeline(target, stateSql(config.stateSchema));
        report = await runPreflight({ config, source, target, identity, identityError, state, walSampleMs: opts.sampleSeconds * 1000 });
      } catch (err) {
        // A check that could not even run is a failure to report, not a crash.
        const d = describeError(err);
        report = { ok: false, checks: [{ id: 'preflight', status: 'fail', message: `preflight could not finish: ${d.message}`, ...(d.hint ? { fix: d.hint } : {}) }], tables: [], plans: [] };
      }
    }
    if (opts.json) {
      const { plans: _plans, ...rest } = report;
      process.stdout.write(`${JSON.stringify(rest, null, 2)}\n`);
    } else {
      process.stdout.write(`${formatPreflight(report, `walbridge preflight: ${describeEndpoint(config.sourceUrl)} → ${describeEndpoint(config.targetUrl)}`)}\n`);
    }
    return report.ok ? 0 : 1;
  } finally {
    for (const c of clients) await c.end().catch(() => {});
  }
}
