/**
 * `npm run demo`: a whole migration on this machine, on two embedded PostgreSQL servers
 * (source 15 as on older Supabase projects, target 17), with an app-shaped database that
 * keeps taking writes while walbridge copies and streams it.
 *
 *   npm run demo                     # runs until Ctrl-C, then verifies and cleans up
 *   npm run demo -- --duration 60    # stops by itself after 60 s of streaming
 *   npm run demo -- --scale 5        # a bigger database
 *
 * Nothing is left behind: servers, slots and temp directories go away on exit or Ctrl-C.
 */
import { parseArgs } from 'node:util';
import { startPair, type Cluster } from '../test/harness/cluster.js';
import { compareTables } from '../test/harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad } from '../test/harness/fixture.js';
import { startDaemon, type DaemonProcess } from '../test/helpers/daemon.js';
import { pipelineRow, tableRows, waitForCatchUp } from '../test/helpers/state.js';

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string' },
    scale: { type: 'string', default: '3' },
    rate: { type: 'string', default: '40' },
  },
});
const scale = Number(args.scale);
const duration = args.duration === undefined ? null : Number(args.duration);

const say = (s: string) => process.stdout.write(`${s}\n`);
const bar = (done: number, total: number, width = 24) => {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
};

let stopping = false;
let pair: { source: Cluster; target: Cluster; destroy(): Promise<void> } | null = null;
let daemon: DaemonProcess | null = null;
const stopRequested = new Promise<void>((resolve) => {
  process.once('SIGINT', () => {
    stopping = true;
    say('\nCtrl-C: verifying and cleaning up (Ctrl-C again to skip)…');
    process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
    resolve();
  });
});

async function cleanup(): Promise<void> {
  daemon?.kill('SIGKILL');
  await pair?.destroy();
}

async function main(): Promise<void> {
  say('Starting two embedded PostgreSQL servers: source 15, target 17…');
  pair = await startPair({ sourceMajor: 15, targetMajor: 17 });
  const { source, target } = pair;
  say(`Loading an app-shaped database on the source (14 tables + auth.users, scale ${scale})…`);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale });
    await c.query(`
      INSERT INTO public.messages (user_id, role, content, telegram_message_id, metadata, created_at)
      SELECT (SELECT min(id) FROM public.users), 'user', repeat('history ' || g || ' ', 10), g,
             jsonb_build_object('n', g), now() - g * interval '1 minute'
        FROM generate_series(1, $1::int) AS g`, [scale * 100_000]);
    await c.query('ANALYZE');
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
  say('The target has the same tables, empty. Starting the app\'s writes on the source…');
  const load = startWriteLoad(source.url(), { ratePerSec: Number(args.rate), truncateEvery: 500 });

  daemon = await startDaemon({
    SOURCE_DATABASE_URL: source.url(),
    TARGET_DATABASE_URL: target.url(),
    WALBRIDGE_SCHEMAS: 'public,auth',
    LOG_LEVEL: 'warn',
  });
  say(`walbridge is running: metrics at http://localhost:${daemon.port}/metrics\n`);

  let streamingSince: number | null = null;
  let lastTick = Date.now();
  let lastTxns = 0;
  while (!stopping) {
    await Promise.race([new Promise((r) => setTimeout(r, 1000)), stopRequested]);
    if (stopping) break;
    const p = await pipelineRow(target).catch(() => null);
    if (!p) continue;
    if (p.phase === 'backfill') {
      // Live per-table progress comes from walbridge's own /metrics.
      const metrics = await fetch(`http://127.0.0.1:${daemon.port}/metrics`).then((r) => r.text()).catch(() => '');
      const series = (name: string) =>
        new Map([...metrics.matchAll(new RegExp(`^${name}\\{table="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => [m[1] as string, Number(m[2])]));
      const copied = series('walbridge_backfill_rows_total');
      const estimated = series('walbridge_backfill_rows_estimated');
      const tables = await tableRows(target);
      say(`copying (${tables.filter((t) => t.state === 'copied').length}/${tables.length} tables done)`);
      for (const t of tables.filter((x) => x.state !== 'pending')) {
        const rows = copied.get(t.table) ?? Number(t.rows_copied);
        const total = t.state === 'copied' ? rows : Math.max(estimated.get(t.table) ?? 0, rows);
        say(`  ${t.table.padEnd(34)} ${bar(rows, total)} ${rows} rows${t.state === 'copied' ? '' : ' …'}`);
      }
    } else if (p.phase === 'streaming') {
      streamingSince ??= Date.now();
      const [lag] = await source.query<{ bytes: string }>(`SELECT (pg_current_wal_lsn() - $1::pg_lsn)::int8::text AS bytes`, [p.applied_lsn]);
      const now = Date.now();
      const txns = load.stats.transactions;
      const rate = ((txns - lastTxns) * 1000) / (now - lastTick);
      lastTxns = txns;
      lastTick = now;
      say(`streaming: applied up to ${p.applied_lsn}, lag ${lag?.bytes ?? '?'} bytes, app writing ${rate.toFixed(0)} txn/s`);
      if (duration !== null && now - streamingSince >= duration * 1000) break;
    } else {
      say(`phase: ${p.phase}`);
    }
  }

  say('\nStopping the app\'s writes and waiting for the target to catch up…');
  const stats = await load.stop();
  await waitForCatchUp(source, target, 120_000);
  say(`The app wrote ${stats.transactions} transactions (${stats.inserts} inserts, ${stats.updates} updates, ${stats.deletes} deletes, ${stats.truncates} truncates).`);
  say('Comparing every table row by row…');
  const diffs = await compareTables(source.url(), target.url(), APP_TABLES);
  let ok = true;
  for (const d of diffs) {
    ok &&= d.equal;
    say(`  ${d.equal ? 'same' : 'DIFFERENT'}  ${d.table.padEnd(34)} ${d.sourceRows} rows`);
  }
  await daemon.stop();
  daemon = null;
  say(ok ? '\nThe target equals the source. Done.' : '\nThe target differs from the source: please report this.');
  process.exitCode = ok ? 0 : 1;
}

try {
  await main();
} finally {
  await cleanup();
}
