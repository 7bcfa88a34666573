/**
 * `walbridge tables [--json]`, `walbridge tables add <glob>…`, `walbridge tables remove <glob>…`
 * and `walbridge resync <schema.table>…`: see and change the table set of a running migration,
 * from any machine with the two URLs. The commands check and record the request on the target
 * (nothing is written when it cannot be done); the daemon carries it out while streaming
 * (tables/changer.ts), and --wait follows it to the end.
 */
import type pg from 'pg';
import { tablePattern } from '../catalog/select.js';
import type { Config } from '../config.js';
import { describeError, WalbridgeError } from '../errors.js';
import { formatLsn } from '../lsn.js';
import { connect } from '../pg/connect.js';
import { displayTable } from '../pg/ident.js';
import { planTargetSchema } from '../schema/make.js';
import { stateSql, type StateSql } from '../sql/state.js';
import { loadPipeline, loadTables, type TableRequest, type TableState } from '../state/store.js';
import { checkAdditions, describeTableState, isMigrated, isSelected, isStreaming, requestAdd, requestChange, resolveGlobs } from '../tables/requests.js';
import { commandFor, targetName, unknownTables } from '../tables/selection.js';
import { loadCommandConfig } from './config.js';
import { abortableDelay } from '../pipeline/run.js';

type Action = 'add' | 'remove' | 'resync';

interface Sessions {
  config: Config;
  source: pg.Client;
  target: pg.Client;
  /** walbridge's state on the target (config.stateSchema). */
  state: StateSql;
}

/** `reverse`: the way back's table set (--reverse), never WALBRIDGE_REVERSE's (commands/config.ts). */
async function withSessions(env: NodeJS.ProcessEnv, reverse: boolean, fn: (s: Sessions) => Promise<number>): Promise<number> {
  const config = loadCommandConfig(env, { reverse });
  if (!config) return 2;
  let source: pg.Client | null = null;
  let target: pg.Client | null = null;
  try {
    source = await connect(config.sourceUrl, { side: 'source', applicationName: 'walbridge tables' });
    target = await connect(config.targetUrl, { side: 'target', applicationName: 'walbridge tables' });
    return await fn({ config, source, target, state: stateSql(config.stateSchema) });
  } catch (err) {
    const d = describeError(err);
    process.stderr.write(`${d.message}\n${d.hint ? `${d.hint}\n` : ''}`);
    return d.kind === 'connection' || d.kind === 'config' ? 2 : 1;
  } finally {
    await source?.end().catch(() => {});
    await target?.end().catch(() => {});
  }
}

/** A migration that can change its tables: recorded, past its start, not cut over, no cutover under way. */
async function assertChangeable(target: pg.Client, sql: StateSql): Promise<void> {
  const state = await loadPipeline(target, sql);
  if (!state || state.phase === 'init') {
    throw new WalbridgeError('state', 'no migration is recorded on the target yet', {
      hint: 'Choose the tables with WALBRIDGE_SCHEMAS / WALBRIDGE_TABLES and start walbridge (walbridge run); change them here once it runs.',
    });
  }
  if (state.phase === 'done') throw new WalbridgeError('state', 'this migration was cut over already', { hint: 'Nothing is migrated any more.' });
  if (state.cutoverRequestedAt !== null) {
    throw new WalbridgeError('state', 'a cutover is under way: the table set cannot change now', {
      hint: 'Let it finish, or cancel it ("walbridge cutover --cancel"), then run this again.',
    });
  }
  if (state.daemonSeenAt === null || Date.now() - state.daemonSeenAt.getTime() > 30_000) {
    process.stderr.write('note: no walbridge daemon has reported in the last 30 s; the request is carried out once one streams.\n');
  }
}

/** The recorded tables the globs name (a glob naming none of them is an error). */
function matchRecorded(recorded: TableState[], globs: string[], keep: (t: TableState) => boolean): TableState[] {
  const out = new Map<string, TableState>();
  const unmatched: string[] = [];
  for (const g of globs) {
    const test = tablePattern(g);
    const hits = recorded.filter((t) => keep(t) && test(t));
    if (hits.length === 0) unmatched.push(g);
    for (const t of hits) out.set(`${t.schema}.${t.name}`, t);
  }
  if (unmatched.length > 0) {
    throw new WalbridgeError('config', `${unmatched.join(', ')}: no table of this migration matches`, {
      hint: '"walbridge tables" lists them (schema.table, globs with * allowed, case-sensitive).',
    });
  }
  return [...out.values()];
}

export async function tablesChangeCommand(env: NodeJS.ProcessEnv, action: Action, globs: string[], opts: { wait: boolean; reverse: boolean }): Promise<number> {
  return withSessions(env, opts.reverse, async ({ config, source, target, state }) => {
    await assertChangeable(target, state);
    const recorded = await loadTables(target, state);
    let names: string[];
    if (action === 'add') {
      const selected = new Set(recorded.filter(isSelected).map((t) => `${t.schema}.${t.name}`));
      const found = await resolveGlobs(source, config, globs);
      const already = found.filter((t) => selected.has(displayTable(t)));
      for (const t of already) process.stdout.write(`${displayTable(t)}: already migrated\n`);
      const adding = found.filter((t) => !selected.has(displayTable(t)));
      if (adding.length > 0) {
        await checkAdditions(source, target, config, adding, recorded);
        await requestAdd(target, state, adding);
      }
      names = adding.map(displayTable);
    } else {
      // Remove: any table the migration carries; resync: a table copied (one being copied is copied anew anyway).
      const keep = action === 'remove' ? isSelected : (t: TableState) => isMigrated(t) && t.state === 'copied';
      const tables = matchRecorded(recorded, globs, keep);
      await requestChange(target, state, tables, action);
      names = tables.map((t) => `${t.schema}.${t.name}`);
    }
    const verb = { add: 'to be added', remove: 'to be removed', resync: 'to be copied again' }[action];
    for (const n of names) process.stdout.write(`${n}: ${verb}\n`);
    if (names.length === 0) return 0;
    if (!opts.wait) {
      process.stdout.write('The running daemon takes this up within seconds, while the other tables stream; "walbridge tables" shows where each stands.\n');
      return 0;
    }
    return await waitFor(target, state, names, action);
  });
}

/** Follow the tables until the request is carried out, printing each change of stage. */
async function waitFor(target: pg.Client, state: StateSql, names: string[], action: Action): Promise<number> {
  const done = (t: TableState | undefined) => (action === 'remove' ? t === undefined || (t.state === 'removed' && t.request === null) : t !== undefined && isStreaming(t));
  const said = new Map<string, string>();
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  try {
    for (;;) {
      const byName = new Map((await loadTables(target, state)).map((t) => [`${t.schema}.${t.name}`, t]));
      for (const n of names) {
        const t = byName.get(n);
        const line = t ? `${describeTableState(t)}${t.state === 'copying' || t.state === 'copied' ? `, ${t.rowsCopied} rows copied` : ''}${t.held > 0 ? `, ${t.held} change(s) held` : ''}` : 'removed';
        if (said.get(n) !== line) process.stdout.write(`${n}: ${line}\n`);
        said.set(n, line);
      }
      if (names.every((n) => done(byName.get(n)))) return 0;
      if (!(await abortableDelay(1000, stop.signal))) {
        process.stdout.write('Stopped waiting; the request stands and the daemon carries it out.\n');
        return 130;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
  }
}

interface Listed {
  table: string;
  state: string;
  stage: string;
  request: TableRequest | null;
  rowsCopied: number;
  held: number;
  copyLsn: string | null;
}

export async function tablesListCommand(env: NodeJS.ProcessEnv, opts: { json: boolean; reverse: boolean }): Promise<number> {
  return withSessions(env, opts.reverse, async ({ config, source, target, state }) => {
    const recorded = await loadTables(target, state);
    const tables: Listed[] = recorded.map((t) => ({
      table: `${t.schema}.${t.name}`,
      state: t.state,
      stage: describeTableState(t),
      request: t.request,
      rowsCopied: t.rowsCopied,
      held: t.held,
      copyLsn: t.copyLsn === null ? null : formatLsn(t.copyLsn),
    }));
    // Tables of a selected schema that the migration does not know: created since it started?
    const fresh = await unknownTables(source, target, config, recorded);
    const newTables: { table: string; onTarget: boolean }[] = [];
    /** What "walbridge schema" would run on the target for the new tables (what they need included). */
    let ddl: string[] = [];
    if (fresh.length > 0 && recorded.length > 0) {
      const plan = await planTargetSchema(source, target, config, 'keep', fresh);
      for (const t of fresh) newTables.push({ table: displayTable(t), onTarget: plan.present.some((p) => p.name === displayTable(t)) });
      ddl = plan.steps.map((s) => s.sql);
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ tables, newTables, ddl }, null, 2)}\n`);
      return 0;
    }
    if (recorded.length === 0) {
      process.stdout.write('No migration recorded on the target yet: start walbridge (walbridge run) to begin.\n');
      return 0;
    }
    const width = Math.max(10, ...tables.map((t) => t.table.length));
    for (const t of tables) {
      const rows = t.state === 'removed' ? '' : `${t.rowsCopied} rows copied${t.copyLsn ? ` at ${t.copyLsn}` : ''}`;
      process.stdout.write(`${t.table.padEnd(width)}  ${t.stage.padEnd(18)}  ${rows}${t.held > 0 ? `, ${t.held} change(s) held` : ''}\n`);
    }
    const there = targetName(config);
    const add = commandFor(config, 'tables add');
    for (const n of newTables) {
      process.stdout.write(config.reverse ? `\nnew on the new database, not carried back: ${n.table}\n` : `\nnew on the source, not migrated: ${n.table}\n`);
      process.stdout.write(
        n.onTarget
          ? `  it exists on ${there}: ${add} ${n.table}\n`
          : `  create it on ${there} first (the statements below; "${commandFor(config, 'schema')}" runs them when WALBRIDGE_TABLES selects it), then: ${add} ${n.table}\n`,
      );
    }
    if (ddl.length > 0) process.stdout.write(`\n${ddl.join('\n')}\n`);
    return 0;
  });
}
