/**
 * `walbridge status [--json]`: the migration's state as recorded on the target, and the
 * slot as the source reports it. Works from any machine with the same two URLs, while the
 * daemon runs elsewhere (on Railway).
 */
import type pg from 'pg';
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { connect } from '../pg/connect.js';
import { stateSql } from '../sql/state.js';
import { readFenceReports, readRecorded, readSlot } from '../status/collect.js';
import { buildStatus, formatStatusText, type FenceReport, type SlotReport } from '../status/report.js';
import type { PipelineState, TableState } from '../state/store.js';

export async function statusCommand(env: NodeJS.ProcessEnv, opts: { json: boolean; reverse?: boolean }): Promise<number> {
  const config = loadCommandConfig(env, { reverse: opts.reverse === true });
  if (!config) return 2;
  const problems: string[] = [];
  let recorded: { pipeline: PipelineState | null; tables: TableState[] } = { pipeline: null, tables: [] };
  let slot: SlotReport | null = null;
  const fences: FenceReport[] = [];
  const withClient = async (url: string, side: 'source' | 'target', fn: (c: pg.Client) => Promise<void>) => {
    let c: pg.Client | null = null;
    try {
      c = await connect(url, { side, applicationName: 'walbridge status' });
      await fn(c);
    } catch (err) {
      const d = describeError(err);
      problems.push(`${side}: ${d.message}${d.hint ? ` (${d.hint})` : ''}`);
    } finally {
      await c?.end().catch(() => {});
    }
  };
  await Promise.all([
    withClient(config.targetUrl, 'target', async (c) => {
      fences.push(...(await readFenceReports(c, 'target')));
      recorded = await readRecorded(c, stateSql(config.stateSchema));
    }),
    withClient(config.sourceUrl, 'source', async (c) => {
      slot = await readSlot(c, config.slotName);
      fences.push(...(await readFenceReports(c, 'source')));
    }),
  ]);
  const report = buildStatus({ pipeline: recorded.pipeline, tables: recorded.tables, slot, fences, migration: config.slotName, conversions: config.conversions });
  if (opts.json) {
    process.stdout.write(`${JSON.stringify({ ...report, problems }, null, 2)}\n`);
  } else {
    if (!recorded.pipeline && problems.length === 0 && fences.length === 0) {
      process.stdout.write('No migration recorded on the target yet: start walbridge (walbridge run) to begin.\n');
    } else {
      process.stdout.write(`${formatStatusText(report)}\n`);
    }
    for (const p of problems) process.stderr.write(`cannot read the ${p}\n`);
  }
  return problems.some((p) => p.startsWith('target')) ? 2 : 0;
}
