/**
 * `npm run demo`: a whole migration on this machine, on two embedded PostgreSQL servers
 * (source 15 as on older Supabase projects, target 17), with an app-shaped database that
 * keeps taking writes while walbridge copies and streams it.
 *
 *   npm run demo                          # press c to cut over, q or Ctrl-C to stop
 *   npm run demo -- --cutover-after 30    # cuts over by itself after 30 s of streaming
 *   npm run demo -- --scale 5             # a bigger database
 *
 * Cutover stops the app's writes, runs `walbridge cutover` (it waits for the last change,
 * moves the sequences, verifies every table, records, cleans the source) and prints the
 * summary. Nothing is left behind: servers, slots and temp directories go away on exit,
 * Ctrl-C included.
 */
import { parseArgs } from 'node:util';
import { startPair, type Cluster } from '../test/harness/cluster.js';
import { compareTables } from '../test/harness/compare.js';
import { APP_TABLES, createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../test/harness/fixture.js';
import { runCli, startDaemon, type DaemonProcess } from '../test/helpers/daemon.js';
import { pipelineRow, tableRows, waitForCatchUp } from '../test/helpers/state.js';

const { values: args } = parseArgs({
  options: {
    'cutover-after': { type: 'string' },
    duration: { type: 'string' },
    scale: { type: 'string', default: '3' },
    rate: { type: 'string', default: '40' },
  },
});
const scale = Number(args.scale);
const cutoverAfter = args['cutover-after'] === undefined ? null : Number(args['cutover-after']);
const stopAfter = args.duration === undefined ? null : Number(args.duration);

const say = (s: string) => process.stdout.write(`${s}\n`);
const bar = (done: number, total: number, width = 24) => {
  const f = total > 0 ? Math.min(1, done / total) : 1;
  const n = Math.round(f * width);
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${(f * 100).toFixed(0).padStart(3)}%`;
};

type Ending = 'cutover' | 'stop';
let ending: Ending | null = null;
let wake: () => void = () => {};
const request = (e: Ending) => {
  ending ??= e;
  wake();
};
let pair: { source: Cluster; target: Cluster; destroy(): Promise<void> } | null = null;
let daemon: DaemonProcess | null = null;
let load: WriteLoad | null = null;

async function cleanup(): Promise<void> {
  daemon?.kill('SIGKILL');
  await load?.stop().catch(() => {});
  await pair?.destroy();
}

function listenForKeys(): void {
  process.on('SIGINT', () => {
    if (ending) void cleanup().then(() => process.exit(130));
    request('stop');
  });
  if (!process.stdin.isTTY) return;
  process.stdin.setRawMode(true);
  process.stdin.resume();
  process.stdin.on('data', (b: Buffer) => {
    const k = b.toString();
    if (k === 'c') request('cutover');
    else if (k === 'q' || k === '\u0003') {
      if (ending) void cleanup().then(() => process.exit(130));
      request('stop');
    }
  });
}

async function metricsSeries(port: number, name: string): Promise<Map<string, number>> {
  const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text()).catch(() => '');
  return new Map([...text.matchAll(new RegExp(`^${name}\\{table="([^"]+)"\\} (\\S+)$`, 'gm'))].map((m) => [m[1] as string, Number(m[2])]));
}

async function main(): Promise<void> {
  listenForKeys();
  say('Starting two embedded PostgreSQL servers: source 15, target 17…');
  pair = await startPair({ sourceMajor: 15, targetMajor: 17, namePrefix: 'demo' });
  const { source, target } = pair;
  say(`Loading an app-shaped database on the source (14 tables + auth.users, scale ${scale})…`);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale });
    await c.query(
      `INSERT INTO public.messages (user_id, role, content, telegram_message_id, metadata, created_at)
       SELECT (SELECT min(id) FROM public.users), 'user', repeat('history ' || g || ' ', 10), g,
              jsonb_build_object('n', g), now() - g * interval '1 minute'
         FROM generate_series(1, $1::int) AS g`,
      [scale * 100_000],
    );
    await c.query('ANALYZE');
  });
  const env = { SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth' };
  say('The target is empty. walbridge schema makes its schema from the source (types, sequences, tables, partitions, keys, indexes)…');
  const made = await runCli(['schema'], env);
  if (made.code !== 0) throw new Error(`walbridge schema failed:\n${made.stdout}${made.stderr}`);
  say(made.stdout.split('\n').filter((l) => l.startsWith('result:')).join('\n'));
  say("The target has the same tables, empty. Starting the app's writes on the source…");
  load = startWriteLoad(source.url(), { ratePerSec: Number(args.rate), truncateEvery: 500 });
  daemon = await startDaemon({ ...env, LOG_LEVEL: 'warn' });
  say(`walbridge is running. Status page: http://localhost:${daemon.port}/   (metrics: /metrics)`);
  say(process.stdin.isTTY ? 'Press c to cut over, q to stop.\n' : '');

  let streamingSince: number | null = null;
  const startedAt = Date.now();
  let lastTick = Date.now();
  let lastTxns = 0;
  while (ending === null) {
    await new Promise<void>((r) => {
      wake = r;
      setTimeout(r, 1000);
    });
    if (ending !== null) break;
    const p = await pipelineRow(target).catch(() => null);
    if (!p) continue;
    if (p.phase === 'backfill') {
      // Live per-table progress comes from walbridge's own /metrics.
      const copied = await metricsSeries(daemon.port, 'walbridge_backfill_rows_total');
      const estimated = await metricsSeries(daemon.port, 'walbridge_backfill_rows_estimated');
      const tables = await tableRows(target);
      say(`copying (${tables.filter((t) => t.state === 'copied').length}/${tables.length} tables done)`);
      for (const t of tables.filter((x) => x.state !== 'pending')) {
        const rows = copied.get(t.table) ?? Number(t.rows_copied);
        const total = t.state === 'copied' ? rows : Math.max(estimated.get(t.table) ?? 0, rows);
        say(`  ${t.table.padEnd(34)} ${bar(rows, total)} ${rows} rows${t.state === 'copied' ? '' : ' …'}`);
      }
    } else if (p.phase === 'streaming' || p.phase === 'catchup') {
      if (streamingSince === null) {
        // A small copy can end between two ticks: say what it did even when no tick saw it running.
        streamingSince = Date.now();
        const tables = await tableRows(target);
        const rows = tables.reduce((n, t) => n + Number(t.rows_copied), 0);
        say(`copy done: ${tables.filter((t) => t.state === 'copied').length}/${tables.length} tables, ${rows} rows, ${((streamingSince - startedAt) / 1000).toFixed(1)} s after start`);
      }
      const [lag] = await source.query<{ bytes: string }>(`SELECT (pg_current_wal_lsn() - $1::pg_lsn)::int8::text AS bytes`, [p.applied_lsn]);
      const now = Date.now();
      const txns = load.stats.transactions;
      const rate = ((txns - lastTxns) * 1000) / (now - lastTick);
      lastTxns = txns;
      lastTick = now;
      say(`streaming: applied up to ${p.applied_lsn}, lag ${lag?.bytes ?? '?'} bytes, the app writes ${rate.toFixed(0)} txn/s`);
      const seconds = (now - streamingSince) / 1000;
      if (cutoverAfter !== null && seconds >= cutoverAfter) request('cutover');
      if (stopAfter !== null && seconds >= stopAfter) request('stop');
    }
  }

  if (ending === 'cutover') {
    // The app keeps writing through the cutover: the fence decides which writes move.
    say('\n$ walbridge cutover   (the app keeps writing)');
    const r = await runCli(['cutover'], env);
    process.stdout.write(r.out);
    const stats = await load.stop();
    load = null;
    say(
      `\nThe app wrote ${stats.transactions} transactions to the old database; every one is on the new database. ` +
        `Its ${stats.errors} write(s) after the fence were refused, saying where the data lives now` +
        '.',
    );
    const { code } = await daemon.exited;
    daemon = null;
    say(`(the daemon saw the cutover and stopped with status ${code})`);
    process.exitCode = r.code === 0 ? 0 : 1;
    return;
  }
  say("\nStopping the app's writes…");
  const stats = await load.stop();
  load = null;
  say(`The app wrote ${stats.transactions} transactions (${stats.inserts} inserts, ${stats.updates} updates, ${stats.deletes} deletes, ${stats.truncates} truncates).`);
  say('Waiting for the target to catch up, then comparing every table row by row…');
  await waitForCatchUp(source, target, 120_000);
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
  if (process.stdin.isTTY) process.stdin.setRawMode(false);
  process.stdin.pause();
  await cleanup();
}
