/**
 * Cutover: how long writes pause when `walbridge cutover` fences the source while pgbench writes
 * at full rate, at the run's scale and at four times it (the median of --cutover-runs cutovers,
 * each ending a fresh migration); the cutover of earlier releases on the same data, once per scale
 * (pgbench stopped, `cutover --no-fence`: a quiet period and every table verified inside the
 * pause); and how fast `walbridge verify` compares table data, next to `pgcopydb compare data` on
 * the same pair.
 *
 * Each scale has a source database of its own, built for it (cutover_1x, cutover_4x): the app
 * database of the other scenarios is never fenced. Each migration gets a new target database and
 * its own WALBRIDGE_SLOT / WALBRIDGE_PUBLICATION; the daemon copies and streams; pgbench writes
 * (bench/app.pgbench without its one table that has no key, every table it writes migrated);
 * `walbridge cutover`; then `walbridge teardown --target --lift-fence` lifts the fence from the
 * source for the next migration, and the target database is dropped.
 */
import { outcome, type BenchContext, type CutoverOldWay, type CutoverResults, type CutoverRun, type CutoverScale, type Outcome, type VerifyRate } from '../context.js';
import { buildSource, createTargetDb, rowCounts, type BulkRanges } from '../dataset.js';
import { COMPARE_JOBS, pgcopydbCompare, pgcopydbCompareCommand, pgcopydbCompareTool } from '../peers.js';
import { runPgbench, startPgbench, type BackgroundPgbench } from '../pgbench.js';
import { lastLines, sleep } from '../proc.js';
import { fmt } from '../report.js';
import { runWalbridgeCli, walbridgeEnv, type CliRun, type Walbridge } from '../walbridge.js';
import { countCheck, walbridgeCopy } from './steps.js';

/** The migrated schemas (walbridgeEnv's WALBRIDGE_SCHEMAS), for the size of the table data. */
const SCHEMAS = ['public', 'auth'];

/** pgbench writes this long before the cutover starts (it then writes through the cutover's own check until the fence). */
const WARMUP_MS = 2000;

/** The old way: the app writes this long, then stops, then the cutover runs. */
const OLD_WAY_LOAD_SECONDS = 3;

/** One migration of the scenario: its target database (named as its slot and publication), environment, daemon. */
interface Migration {
  name: string;
  env: Record<string, string>;
  w: Walbridge;
}

export async function measureCutover(ctx: BenchContext): Promise<Outcome<{ cutover: CutoverResults }>> {
  const { opts, say } = ctx;
  const t0 = Date.now();
  const res: CutoverResults = { clients: opts.clients, runsPerScale: opts.cutoverRuns, scales: [] };
  const rec = outcome({ cutover: res });
  rec.commands.cutover = 'walbridge cutover  (its migration\'s environment; pgbench at full rate meanwhile, stopped by the fence)';
  rec.commands.cutover_old_way = `pgbench for ${OLD_WAY_LOAD_SECONDS} s, then walbridge cutover --no-fence  (default --quiet-seconds 5, every table verified)`;
  rec.commands.verify = `walbridge verify --json --jobs ${COMPARE_JOBS}`;
  const tool = await pgcopydbCompareTool(opts.pgcopydbCompare);
  res.pgcopydb = `${opts.pgcopydbCompare}${tool.version ? ` (${tool.version})` : ''}`;
  if (tool.ok) rec.commands.pgcopydb_compare = pgcopydbCompareCommand(opts.pgcopydbCompare);
  else say(`cutover: ${tool.why ?? 'no pgcopydb compare data'}; verify throughput is measured for walbridge alone`);
  const peaks: number[] = [];

  for (const multiple of [1, 4]) {
    const scale = opts.scale * multiple;
    const label = `${multiple}x`;
    const sourceDb = `cutover_${label}`;
    const sc: CutoverScale = { multiple, scale, tableBytes: 0, rows: 0, runs: [] };
    res.scales.push(sc);
    try {
      say(`cutover ${label}: building a source database of its own at scale ${scale} …`);
      await ctx.source.query(`DROP DATABASE IF EXISTS ${sourceDb} WITH (FORCE)`, [], 'postgres');
      await ctx.source.query(`CREATE DATABASE ${sourceDb}`, [], 'postgres');
      const ranges = await buildSource(ctx.source, scale, sourceDb);
      sc.tableBytes = await tableBytes(ctx, sourceDb);
      sc.rows = Object.values(await rowCounts(ctx.source, sourceDb)).reduce((a, b) => a + b, 0);
      say(`  ${fmt.mb(sc.tableBytes)} of table data (without indexes), ${fmt.n(sc.rows)} rows`);

      for (let i = 1; i <= opts.cutoverRuns; i++) {
        const name = `bench_cut_${label}_${i}`;
        say(`cutover ${label} ${i}/${opts.cutoverRuns}: a fresh migration (${name}) copies …`);
        const env = migrationEnv(ctx, sourceDb, name);
        let m: Migration | null = null;
        const run: CutoverRun = {};
        sc.runs.push(run);
        try {
          m = await migrate(ctx, name, env);
          if (i === 1) sc.verify = await verifyRates(ctx, m, sourceDb, sc.tableBytes, tool.ok);
          say(`  pgbench at full rate (-c ${opts.clients}), then walbridge cutover while it writes …`);
          await fencedCutover(ctx, m, sourceDb, ranges, rec.commands, run);
          peaks.push(m.w.rss.peakMb());
        } catch (err) {
          run.error = (err as Error).message;
          rec.errors.push(`cutover ${label} run ${i}: ${run.error}`);
          say(`  failed: ${run.error}`);
        } finally {
          await finish(ctx, name, env, m?.w ?? null).catch((err: unknown) => {
            rec.errors.push(`cutover ${label} run ${i}: cleaning up: ${(err as Error).message}`);
            say(`  cleaning up failed: ${(err as Error).message}`);
          });
        }
      }
      const paused = sc.runs.map((r) => r.pausedSeconds).filter((x): x is number => x !== undefined);
      if (paused.length > 0) sc.medianPausedSeconds = median(paused);
      say(`  ${label}: writes paused ${paused.map((p) => fmt.s(p, 2)).join(', ')}: median ${fmt.s(sc.medianPausedSeconds, 2)}`);

      const name = `bench_cut_${label}_old`;
      say(`cutover ${label}, the old way: a fresh migration (${name}), pgbench for ${OLD_WAY_LOAD_SECONDS} s and stopped, then cutover --no-fence …`);
      const env = migrationEnv(ctx, sourceDb, name);
      let m: Migration | null = null;
      sc.oldWay = {};
      try {
        m = await migrate(ctx, name, env);
        sc.oldWay = await oldWayCutover(ctx, m, sourceDb, ranges);
        peaks.push(m.w.rss.peakMb());
      } catch (err) {
        sc.oldWay.error = (err as Error).message;
        rec.errors.push(`cutover ${label} old way: ${sc.oldWay.error}`);
        say(`  failed: ${sc.oldWay.error}`);
      } finally {
        await finish(ctx, name, env, m?.w ?? null).catch((err: unknown) => rec.errors.push(`cutover ${label} old way: cleaning up: ${(err as Error).message}`));
      }
    } catch (err) {
      sc.error = (err as Error).message;
      rec.errors.push(`cutover ${label}: ${sc.error}`);
      say(`  failed: ${sc.error}`);
    } finally {
      await ctx.source.query(`DROP DATABASE IF EXISTS ${sourceDb} WITH (FORCE)`, [], 'postgres').catch(() => undefined);
    }
  }
  if (peaks.length > 0) rec.rssMb.cutover = Math.max(...peaks);
  res.seconds = (Date.now() - t0) / 1000;
  say(`cutover: ${fmt.s(res.seconds, 0)} in all`);
  return rec;
}

/** pg_table_size (heap, TOAST, free space and visibility maps; no index) of every migrated table and partition. */
async function tableBytes(ctx: BenchContext, database: string): Promise<number> {
  const [r] = await ctx.source.query<{ b: string }>(
    `SELECT COALESCE(sum(pg_table_size(c.oid)), 0)::text AS b
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = ANY ($1) AND c.relkind = 'r'`,
    [SCHEMAS],
    database,
  );
  return Number(r?.b ?? 0);
}

/** A migration's environment: the source database, a target database named as its slot and publication. */
function migrationEnv(ctx: BenchContext, sourceDb: string, name: string): Record<string, string> {
  return walbridgeEnv(ctx.source.url(sourceDb), ctx.target.url(name), { ...ctx.opts.walbridgeSettings, WALBRIDGE_SLOT: name, WALBRIDGE_PUBLICATION: name });
}

/** A new target database, and the daemon copying into it under its own slot and publication until it streams. */
async function migrate(ctx: BenchContext, name: string, env: Record<string, string>): Promise<Migration> {
  await createTargetDb(ctx.target, name);
  const c = await walbridgeCopy(ctx, env, name, name);
  ctx.say(`  copied in ${fmt.s(c.seconds)}`);
  return { name, env, w: c.w };
}

/**
 * The migration's end, whatever happened: the daemon stopped (after a cutover it has stopped by
 * itself), `walbridge teardown --target --lift-fence` (slot and publication, the way back's slot on
 * the target, the state, and the fence on the source: the next migration's app writes again), the
 * target database dropped.
 */
async function finish(ctx: BenchContext, name: string, env: Record<string, string>, w: Walbridge | null): Promise<void> {
  if (w) await w.stop();
  const td = await runWalbridgeCli(['teardown', '--target', '--lift-fence', '--force'], env);
  if (td.code !== 0) throw new Error(`walbridge teardown exit ${td.code}: ${lastLines(td.stderr, 3)}`);
  // A slot left on the database would keep DROP DATABASE from running.
  await ctx.target.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1 AND NOT active', [name], 'postgres');
  await ctx.target.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`, [], 'postgres');
}

/** When the cutover printed the line starting with `prefix` (ms), or null. */
function lineAt(cut: CliRun, prefix: string): number | null {
  return cut.lines.find((l) => l.text.startsWith(prefix))?.at ?? null;
}

const cliFailure = (what: string, cut: CliRun) =>
  new Error(`${what} exit ${cut.code}: ${lastLines(cut.stderr || cut.lines.map((l) => l.text).join('\n'), 4)}`);

/** The cutover's record on the target: how long writes were refused (null without a fence), and when it was written. */
async function recorded(ctx: BenchContext, db: string): Promise<{ paused: number | null; at: Date }> {
  const [r] = await ctx.target.query<{ paused: number | null; at: Date }>('SELECT writes_paused_seconds::float8 AS paused, at FROM walbridge.cutover', [], db);
  if (!r) throw new Error('no cutover recorded on the target');
  return r;
}

/** pgbench at full rate; after a moment, `walbridge cutover`; its pause as it recorded it, split by step, into `run`. */
async function fencedCutover(ctx: BenchContext, m: Migration, sourceDb: string, ranges: BulkRanges, commands: Record<string, string>, run: CutoverRun): Promise<void> {
  const { source, opts, say } = ctx;
  const load = startPgbench(source, ranges, { seconds: 3600, clients: opts.clients, keyedOnly: true }, sourceDb);
  commands.pgbench_cutover = load.command;
  let pb: BackgroundPgbench;
  try {
    await sleep(WARMUP_MS);
    if (!load.running()) throw new Error(`pgbench stopped before the cutover:\n${lastLines((await load.done).output, 6)}`);
    const cut = await runWalbridgeCli(['cutover'], m.env);
    run.output = cut.lines.map((l) => `+${((l.at - cut.startedAt) / 1000).toFixed(2)} s ${l.text}`);
    if (cut.code !== 0) throw cliFailure('walbridge cutover', cut);
    // Its clients stop on the fence's refusal; one that got nothing to write meanwhile stops here.
    pb = (await Promise.race([load.done, sleep(10_000).then(() => null)])) ?? (await load.stop());
    const r = await recorded(ctx, m.name);
    if (r.paused === null) throw new Error('the cutover recorded no pause (did it fence?)');
    run.pausedSeconds = r.paused;
    run.commandSeconds = (cut.endedAt - cut.startedAt) / 1000;
    const at = (n: number) => lineAt(cut, `${n}/7 `);
    const [t3, t4, t5, t6, t7] = [at(3), at(4), at(5), at(6), at(7)];
    if (t3 !== null) run.beforeFenceSeconds = (t3 - cut.startedAt) / 1000;
    if (t4 !== null && t5 !== null && t6 !== null && t7 !== null) {
      const apply = (t5 - t4) / 1000;
      const sequences = (t6 - t5) / 1000;
      const check = (t7 - t6) / 1000;
      run.split = { fence: r.paused - apply - sequences - check, apply, sequences, check };
    }
    const changed = cut.lines.map((l) => /^\s+(\d+) row\(s\) changed since, equal/.exec(l.text)).find((x) => x !== null);
    if (changed) run.rowsCheckedInPause = Number(changed[1]);
    if (pb.tps !== null) run.pgbenchTps = pb.tps;
    run.refusedClients = pb.abortedClients;
    if (pb.firstError) run.refusal = pb.firstError;
    // The source is fenced, so still: every row must be on the target.
    run.check = countCheck(await rowCounts(source, sourceDb), await rowCounts(ctx.target, m.name));
    const s = run.split;
    say(
      `  writes paused ${fmt.s(run.pausedSeconds, 2)}` +
        (s ? ` (fence ${fmt.s(s.fence, 2)}, apply ${fmt.s(s.apply, 2)}, sequences ${fmt.s(s.sequences, 2)}, check ${fmt.s(s.check, 2)} of ${fmt.n(run.rowsCheckedInPause)} rows)` : '') +
        `; the command took ${fmt.s(run.commandSeconds)}, ${fmt.s(run.beforeFenceSeconds)} of it before the fence; pgbench ${run.pgbenchTps === undefined ? '–' : run.pgbenchTps.toFixed(0)} tps, ` +
        `${run.refusedClients} client(s) refused; ${run.check}`,
    );
    if (run.check.startsWith('ROW COUNTS DIFFER')) throw new Error(run.check);
  } finally {
    if (load.running()) await load.stop();
  }
}

/** pgbench for a few seconds and stopped; then `walbridge cutover --no-fence`: from the app's stop until the cutover was recorded. */
async function oldWayCutover(ctx: BenchContext, m: Migration, sourceDb: string, ranges: BulkRanges): Promise<CutoverOldWay> {
  const { source, opts, say } = ctx;
  await runPgbench(source, ranges, { seconds: OLD_WAY_LOAD_SECONDS, clients: opts.clients, keyedOnly: true }, sourceDb);
  const stoppedAt = Date.now();
  const cut = await runWalbridgeCli(['cutover', '--no-fence'], m.env);
  if (cut.code !== 0) throw cliFailure('walbridge cutover --no-fence', cut);
  const r = await recorded(ctx, m.name);
  const old: CutoverOldWay = { pausedSeconds: (r.at.getTime() - stoppedAt) / 1000 };
  const at = (n: number) => lineAt(cut, `${n}/6 `);
  const [t2, t3, t4] = [at(2), at(3), at(4)];
  if (t2 !== null) old.quietSeconds = (t2 - stoppedAt) / 1000;
  if (t3 !== null && t4 !== null) old.verifySeconds = (t4 - t3) / 1000;
  old.check = countCheck(await rowCounts(source, sourceDb), await rowCounts(ctx.target, m.name));
  say(`  writes paused ${fmt.s(old.pausedSeconds, 2)} (the app stopped → recorded): quiet period ${fmt.s(old.quietSeconds)}, verify ${fmt.s(old.verifySeconds)}; ${old.check}`);
  return old;
}

/**
 * `walbridge verify` and `pgcopydb compare data` on the pair, in step and with no writes (right
 * after the copy, the daemon streaming): wall time of each command, and MB/s of table data.
 */
async function verifyRates(ctx: BenchContext, m: Migration, sourceDb: string, bytes: number, withPgcopydb: boolean): Promise<{ walbridge: VerifyRate; pgcopydb: VerifyRate }> {
  const { say } = ctx;
  const rate = (seconds: number) => bytes / 1048576 / seconds;
  const walbridge: VerifyRate = {};
  const pgcopydb: VerifyRate = {};
  say(`  verify throughput: walbridge verify (--jobs ${COMPARE_JOBS}) …`);
  try {
    const v = await runWalbridgeCli(['verify', '--json', '--jobs', String(COMPARE_JOBS)], m.env);
    const report = JSON.parse(v.lines.map((l) => l.text).join('\n') || '{}') as { equal?: boolean; tables?: unknown[] };
    if (v.code !== 0 || report.equal !== true) throw cliFailure('walbridge verify', v);
    walbridge.seconds = (v.endedAt - v.startedAt) / 1000;
    walbridge.mbps = rate(walbridge.seconds);
    walbridge.result = `equal (${report.tables?.length ?? '?'} tables)`;
    say(`    ${fmt.s(walbridge.seconds)}: ${walbridge.mbps.toFixed(0)} MB/s; ${walbridge.result}`);
  } catch (err) {
    walbridge.error = (err as Error).message;
    say(`    failed: ${walbridge.error}`);
  }
  if (!withPgcopydb) {
    pgcopydb.error = 'no pgcopydb with compare data';
    return { walbridge, pgcopydb };
  }
  say(`  verify throughput: pgcopydb compare data (--table-jobs ${COMPARE_JOBS}) …`);
  try {
    const c = await pgcopydbCompare(ctx.opts.pgcopydbCompare, ctx.source.url(sourceDb), ctx.target.url(m.name));
    pgcopydb.seconds = c.seconds;
    pgcopydb.mbps = rate(c.seconds);
    pgcopydb.result = 'same (exit 0)';
    say(`    ${fmt.s(pgcopydb.seconds)}: ${pgcopydb.mbps.toFixed(0)} MB/s`);
  } catch (err) {
    pgcopydb.error = (err as Error).message;
    say(`    failed: ${pgcopydb.error}`);
  }
  return { walbridge, pgcopydb };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}
