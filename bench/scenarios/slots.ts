/**
 * What each extra logical replication slot costs the source (`--only slots`, not in the default
 * run). Table groups put several walbridge services on one source, each with its own slot and
 * publication over a part of the tables; but a walsender decodes ALL of the WAL for its slot, the
 * tables outside its publication included (pgoutput filters after decoding), so every slot is the
 * whole decoding once more. Measured with pg_recvlogical (pgoutput to /dev/null, the consumer that
 * does nothing) in place of the daemons, so that the figures are the source's alone:
 *
 *   none    no slot (live only): the load alone
 *   one     1 slot, its publication every table (one walbridge service, as today)
 *   two     2 slots: public.messages (the hot table: two inserts in every transaction) | the rest
 *   four    4 slots: messages | sessions and users | orders | the rest
 *   idle    the one slot, plus a slot whose publication holds one small table the load never
 *           writes (public.sitniks_chat_mappings): decoding with nothing to send
 *
 * Each group of tables is in exactly one publication of a configuration, as table groups would be.
 *
 * 1. Backlog: every configuration's slots are created at one position, then one pgbench backlog is
 *    written with no consumer; each configuration's slots are then read at once, to the marker
 *    after the backlog: per walsender the seconds, MB of WAL/s and changes decoded/s, and the CPU
 *    seconds of every walsender and of the whole source server. The same WAL for each configuration.
 * 2. Live: with each configuration's slots read at once (fresh slots, created just before), pgbench
 *    for --slots-seconds twice: throttled to --live-rate (the same work in every configuration, so
 *    the source's CPU seconds compare as they are) and at its full rate (the tps the load keeps);
 *    in --slots-rounds rounds, the second in reverse order so that a drift of the shared machine
 *    does not favour one configuration. Each: the tps, the source's CPU seconds (the whole server,
 *    and its walsenders), how long the walsenders took to catch up once the load stopped.
 *
 * Autovacuum is off while the scenario runs (a worker starting in one run and not in another would
 * be counted as the source's); a VACUUM before each configuration's live runs, outside what is
 * measured, does its work instead. The setting is restored at the end.
 *
 * CPU seconds are from /proc (bench/cpu.ts): the whole source is its postmaster and every process
 * it runs or reaped meanwhile; a walsender is its pid, found as its slot's active_pid. What each
 * walsender sent is what its pg_recvlogical wrote (/proc/<pid>/io wchar: the pgoutput messages,
 * plus one newline each). Every slot and publication of the scenario is dropped at its end.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import type pg from 'pg';
import { createPublication } from '../../src/sql/source.js';
import type { Cluster } from '../../test/harness/cluster.js';
import { outcome, type BenchContext, type Outcome, type SlotsConfig, type SlotsDrain, type SlotsLive, type SlotsResults } from '../context.js';
import { cpuSeconds, parentPid, serverCpuSeconds } from '../cpu.js';
import { ALL_TABLES } from '../dataset.js';
import { PG_RECVLOGICAL } from '../peers.js';
import { currentLsn, lsnDiff, runPgbench, settledRowChanges, writeMarker } from '../pgbench.js';
import { collect, lastLines, sleep, spawnTracked, toolEnv, type ProcResult } from '../proc.js';
import { fmt } from '../report.js';
import { connect } from '../walbridge.js';
import { writeBacklog } from './steps.js';

/** The hot table: two rows inserted by every transaction of bench/app.pgbench, most of its WAL. */
const HOT = ['public.messages'];
/** A small table bench/app.pgbench never writes: the idle slot's whole publication. */
export const IDLE_TABLE = 'public.sitniks_chat_mappings';
const SESSIONS = ['public.agent_sessions', 'public.users', 'auth.users'];
const ORDERS = ['public.orders', 'public.order_items', 'public.products', 'public.crm_orders'];
const rest = (...taken: string[][]) => ALL_TABLES.filter((t) => !taken.flat().includes(t));

/** The configurations, in the order of the first round: name, what it is, each slot's tables. */
const CONFIGS: Array<{ name: string; label: string; groups: string[][]; live: boolean; backlog: boolean }> = [
  { name: 'none', label: 'no slot (the load alone)', groups: [], live: true, backlog: false },
  { name: 'one', label: '1 slot: every table', groups: [ALL_TABLES], live: true, backlog: true },
  { name: 'two', label: '2 slots: messages | the rest', groups: [HOT, rest(HOT)], live: true, backlog: true },
  {
    name: 'four',
    label: '4 slots: messages | sessions+users | orders | the rest',
    groups: [HOT, SESSIONS, ORDERS, rest(HOT, SESSIONS, ORDERS)],
    live: true,
    backlog: true,
  },
  { name: 'idle', label: `1 slot + 1 idle slot (${IDLE_TABLE} alone)`, groups: [ALL_TABLES, [IDLE_TABLE]], live: true, backlog: true },
];

const slotName = (config: string, i: number) => `bench_slots_${config}_${i + 1}`;
const tableName = (t: string) => {
  const dot = t.indexOf('.');
  return { schema: t.slice(0, dot), name: t.slice(dot + 1) };
};

export async function measureSlots(ctx: BenchContext): Promise<Outcome<{ slots: SlotsResults }>> {
  const { source, opts, say } = ctx;
  const t0 = Date.now();
  const configs: SlotsConfig[] = CONFIGS.map((c) => ({
    name: c.name,
    label: c.label,
    slots: c.groups.map((tables, i) => ({ slot: slotName(c.name, i), tables })),
  }));
  const res: SlotsResults = { clients: opts.clients, liveSeconds: opts.slotsSeconds, steadyRate: opts.liveRate, rounds: opts.slotsRounds, configs };
  const rec = outcome({ slots: res });
  rec.commands.slots_consumer =
    `${PG_RECVLOGICAL} -d "host=… dbname=app replication=database application_name=<slot>" --slot <slot> --start ` +
    '-o proto_version=1 -o publication_names=<slot> -f /dev/null --no-loop  (one per slot, all at once)';
  rec.commands.slots_publication = "CREATE PUBLICATION <slot> FOR TABLE <its tables> WITH (publish = 'insert, update, delete, truncate', publish_via_partition_root = true)  (as walbridge makes its own)";
  const all = configs.flatMap((c) => c.slots);
  const ctl = await connect(source, 'app');
  try {
    await ctl.query('ALTER SYSTEM SET autovacuum = off');
    await ctl.query('SELECT pg_reload_conf()');
    await ctl.query('VACUUM');
    for (const s of all) {
      await ctl.query(`DROP PUBLICATION IF EXISTS ${s.slot}`);
      await ctl.query(createPublication(s.slot, s.tables.map(tableName)));
    }
    const idleBefore = await idleTableChanges(ctl);

    // 1. One backlog, decoded by each configuration's slots in turn --------------------------------
    const backlogConfigs = configs.filter((c) => CONFIGS.find((x) => x.name === c.name)?.backlog);
    say(`slots: ${backlogConfigs.reduce((a, c) => a + c.slots.length, 0)} slots created at one position, then a backlog of ${fmt.n(opts.slotsBacklog)} app transactions (pgbench -c ${opts.clients}), no consumer …`);
    for (const c of backlogConfigs) for (const s of c.slots) await createSlot(ctl, s.slot);
    await ctl.query('CHECKPOINT');
    const backlog = await writeBacklog({ ...ctx, opts: { ...opts, backlog: opts.slotsBacklog } });
    const { marker, command, ...figures } = backlog;
    res.backlog = figures;
    rec.commands.slots_backlog = command;
    say(`  backlog: ${fmt.n(figures.transactions)} transactions, ${fmt.n(figures.changes)} row changes, ${fmt.mb(figures.walBytes)} of WAL`);
    for (const c of backlogConfigs) {
      say(`slots: the backlog read by ${c.label} …`);
      try {
        c.drain = await drainConfig(source, ctl, c, marker.lsn);
        const d = c.drain;
        say(
          `  done in ${fmt.s(Math.max(...d.seconds), 2)} (each: ${d.seconds.map((x) => x.toFixed(2)).join(', ')} s); walsenders CPU ${d.walsenderCpu.map((x) => x.toFixed(2)).join(' + ')} s, ` +
            `source ${fmt.s(d.sourceCpu, 2)}; sent ${d.sentBytes.map((x) => fmt.mb(x)).join(', ')}`,
        );
      } catch (err) {
        c.error = (err as Error).message;
        rec.errors.push(`slots backlog ${c.name}: ${c.error}`);
        say(`  failed: ${c.error}`);
      } finally {
        for (const s of c.slots) await dropSlot(ctl, s.slot).catch(() => undefined);
      }
    }

    // 2. The live load with each configuration's slots read at once ----------------------------------
    const order = configs.filter((c) => CONFIGS.find((x) => x.name === c.name)?.live);
    for (let round = 0; round < opts.slotsRounds; round++) {
      const these = round % 2 === 0 ? order : [...order].reverse();
      for (const c of these) {
        if (c.error) continue;
        say(`slots: round ${round + 1}/${opts.slotsRounds}, ${c.label}: pgbench -c ${opts.clients} for ${opts.slotsSeconds} s at ${opts.liveRate} tps, then at full rate …`);
        try {
          const r = await liveConfig(ctx, ctl, c, rec.commands);
          c.steady = addLive(c.steady, r.steady);
          c.live = addLive(c.live, r.full);
          for (const [how, x] of [[`${opts.liveRate} tps`, r.steady], ['full rate', r.full]] as const) {
            say(
              `  ${how}: ${x.tps.toFixed(0)} tps; source CPU ${fmt.s(x.sourceCpu, 2)}, walsenders ${x.walsenderCpu.map((v) => v.toFixed(2)).join(' + ') || '0'} s; ` +
                `caught up ${fmt.s(x.catchUpSeconds, 2)} after the load`,
            );
          }
        } catch (err) {
          c.error = (err as Error).message;
          rec.errors.push(`slots live ${c.name}: ${c.error}`);
          say(`  failed: ${c.error}`);
        } finally {
          for (const s of c.slots) await dropSlot(ctl, s.slot).catch(() => undefined);
        }
      }
    }
    res.idleTableChanges = (await idleTableChanges(ctl)) - idleBefore;
  } finally {
    for (const s of all) {
      await dropSlot(ctl, s.slot).catch(() => undefined);
      await ctl.query(`DROP PUBLICATION IF EXISTS ${s.slot}`).catch(() => undefined);
    }
    await ctl.query('ALTER SYSTEM RESET autovacuum').catch(() => undefined);
    await ctl.query('SELECT pg_reload_conf()').catch(() => undefined);
    await ctl.end().catch(() => undefined);
    res.seconds = (Date.now() - t0) / 1000;
  }
  return rec;
}

/** Rows written to the idle slot's table so far (the load should write none). */
async function idleTableChanges(c: pg.Client): Promise<number> {
  const [schema, name] = IDLE_TABLE.split('.');
  const r = await c.query<{ n: string }>(
    'SELECT (n_tup_ins + n_tup_upd + n_tup_del)::text AS n FROM pg_stat_user_tables WHERE schemaname = $1 AND relname = $2',
    [schema, name],
  );
  return Number(r.rows[0]?.n ?? 0);
}

async function createSlot(c: pg.Client, slot: string): Promise<void> {
  await dropSlot(c, slot);
  await c.query("SELECT pg_create_logical_replication_slot($1, 'pgoutput')", [slot]);
}

/** Drop a slot once its walsender has gone (it exits a moment after its pg_recvlogical). */
async function dropSlot(c: pg.Client, slot: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await c.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot]);
    const row = r.rows[0];
    if (!row) return;
    if (!row.active) {
      await c.query('SELECT pg_drop_replication_slot($1)', [slot]);
      return;
    }
    if (Date.now() > deadline) throw new Error(`slot ${slot} still active after 20 s`);
    await sleep(100);
  }
}

/** One pg_recvlogical reading one slot to /dev/null, and the walsender that serves it. */
interface Consumer {
  slot: string;
  child: ChildProcess;
  done: Promise<ProcResult>;
  walsender: number;
  startedAt: number;
}

/** Start one pg_recvlogical per slot, all at once; resolve when each slot has its walsender. */
async function startConsumers(source: Cluster, c: pg.Client, slots: string[]): Promise<Consumer[]> {
  const started = slots.map((slot) => {
    const args = [
      '-d',
      `host=${source.host} port=${source.port} dbname=app user=postgres replication=database application_name=${slot}`,
      '--slot',
      slot,
      '--start',
      '-o',
      'proto_version=1',
      '-o',
      `publication_names=${slot}`,
      '-f',
      '/dev/null',
      '--no-loop',
    ];
    const startedAt = Date.now();
    const child = spawnTracked(PG_RECVLOGICAL, args, { env: toolEnv({ PGPASSWORD: source.password }) });
    const done = collect(child, startedAt);
    child.stdin?.end();
    return { slot, child, done, startedAt };
  });
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = await c.query<{ slot_name: string; active_pid: number | null }>('SELECT slot_name, active_pid FROM pg_replication_slots WHERE slot_name = ANY($1)', [slots]);
    const pids = new Map(r.rows.map((x) => [x.slot_name, x.active_pid]));
    if (started.every((s) => pids.get(s.slot))) return started.map((s) => ({ ...s, walsender: pids.get(s.slot) as number }));
    for (const s of started) {
      if (s.child.exitCode !== null || s.child.signalCode !== null) {
        const out = await s.done;
        throw new Error(`pg_recvlogical on ${s.slot} exited (${out.code ?? out.signal}): ${lastLines(out.stderr, 4)}`);
      }
    }
    if (Date.now() > deadline) throw new Error(`slots not all active after 20 s: ${slots.filter((s) => !pids.get(s)).join(', ')}`);
    await sleep(20);
  }
}

/** SIGINT every consumer (pg_recvlogical exits cleanly on it) and wait for them. */
async function stopConsumers(consumers: Consumer[]): Promise<void> {
  for (const x of consumers) if (x.child.exitCode === null && x.child.signalCode === null) x.child.kill('SIGINT');
  await Promise.all(consumers.map((x) => x.done.catch(() => undefined)));
}

/** Bytes a process has written so far (/proc/<pid>/io wchar: /dev/null included); null if unreadable. */
function writtenBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /^wchar: (\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/io`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Wait until every consumer's walsender has decoded past `lsn` (pg_stat_replication.sent_lsn: the
 * end of the last record a logical walsender read, whether or not it sent anything for it);
 * the time each got there. Throws if a consumer exits first.
 */
async function waitDecoded(c: pg.Client, consumers: Consumer[], lsn: string, timeoutMs: number): Promise<Map<string, number>> {
  const at = new Map<string, number>();
  const deadline = Date.now() + timeoutMs;
  while (at.size < consumers.length) {
    const r = await c.query<{ pid: number; done: boolean }>('SELECT pid, sent_lsn >= $1::pg_lsn AS done FROM pg_stat_replication WHERE pid = ANY($2)', [
      lsn,
      consumers.map((x) => x.walsender),
    ]);
    const now = Date.now();
    for (const row of r.rows) {
      const x = consumers.find((y) => y.walsender === row.pid);
      if (x && row.done && !at.has(x.slot)) at.set(x.slot, now);
    }
    for (const x of consumers) {
      if (!at.has(x.slot) && (x.child.exitCode !== null || x.child.signalCode !== null)) {
        const out = await x.done;
        throw new Error(`pg_recvlogical on ${x.slot} exited (${out.code ?? out.signal}) before ${lsn}: ${lastLines(out.stderr, 4)}`);
      }
    }
    if (now > deadline) throw new Error(`not every walsender past ${lsn} after ${timeoutMs / 1000} s`);
    if (at.size < consumers.length) await sleep(25);
  }
  return at;
}

/** The postmaster's pid: the parent of this connection's backend. */
async function postmasterOf(c: pg.Client): Promise<number> {
  const r = await c.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const pid = parentPid(r.rows[0]?.pid ?? -1);
  if (pid === null) throw new Error('cannot find the source postmaster');
  return pid;
}

/** One configuration's slots (created before the backlog) read at once up to the marker after it. */
async function drainConfig(source: Cluster, ctl: pg.Client, c: SlotsConfig, markerLsn: string): Promise<SlotsDrain> {
  const postmaster = await postmasterOf(ctl);
  const s0 = serverCpuSeconds(postmaster);
  const consumers = await startConsumers(source, ctl, c.slots.map((s) => s.slot));
  try {
    const at = await waitDecoded(ctl, consumers, markerLsn, 30 * 60_000);
    // Each walsender's whole life (it started with its consumer); read before the consumers stop.
    const walsenderCpu = consumers.map((x) => cpuSeconds(x.walsender) ?? NaN);
    const sourceCpu = serverCpuSeconds(postmaster) - s0;
    const consumerCpu = consumers.reduce((a, x) => a + (x.child.pid === undefined ? 0 : (cpuSeconds(x.child.pid) ?? 0)), 0);
    const sentBytes = consumers.map((x) => writtenBytes(x.child.pid) ?? NaN);
    return { seconds: consumers.map((x) => ((at.get(x.slot) ?? NaN) - x.startedAt) / 1000), walsenderCpu, sourceCpu, consumerCpu, sentBytes };
  } finally {
    await stopConsumers(consumers);
  }
}

/**
 * One configuration's live runs: VACUUM (autovacuum is off), fresh slots and their consumers, then
 * pgbench throttled to --live-rate and at its full rate, each measured until every walsender is
 * past the marker after it.
 */
async function liveConfig(ctx: BenchContext, ctl: pg.Client, c: SlotsConfig, commands: Record<string, string>): Promise<{ steady: SlotsLive; full: SlotsLive }> {
  await ctl.query('VACUUM');
  for (const s of c.slots) await createSlot(ctl, s.slot);
  const consumers = await startConsumers(ctx.source, ctl, c.slots.map((s) => s.slot));
  try {
    const steady = await liveRun(ctx, ctl, consumers, commands, ctx.opts.liveRate);
    const full = await liveRun(ctx, ctl, consumers, commands);
    return { steady, full };
  } finally {
    await stopConsumers(consumers);
  }
}

/** pgbench for --slots-seconds (at `rate` tps, else full rate) with these consumers reading; from its start until every walsender is past the marker after it. */
async function liveRun(ctx: BenchContext, ctl: pg.Client, consumers: Consumer[], commands: Record<string, string>, rate?: number): Promise<SlotsLive> {
  const { source, opts } = ctx;
  await ctl.query('CHECKPOINT');
  // The walsenders idle before the window: the checkpoint's WAL (and a VACUUM's) decoded already.
  if (consumers.length > 0) await waitDecoded(ctl, consumers, await currentLsn(source), 10 * 60_000);
  const postmaster = await postmasterOf(ctl);
  const changes0 = await settledRowChanges(source);
  const lsn0 = await currentLsn(source);
  const ws0 = consumers.map((x) => cpuSeconds(x.walsender) ?? NaN);
  const cs0 = consumers.map((x) => (x.child.pid === undefined ? 0 : (cpuSeconds(x.child.pid) ?? 0)));
  const sent0 = consumers.map((x) => writtenBytes(x.child.pid) ?? NaN);
  const s0 = serverCpuSeconds(postmaster);
  const pb = await runPgbench(source, ctx.ranges, { seconds: opts.slotsSeconds, clients: opts.clients, ...(rate ? { rate } : {}) });
  const ended = Date.now();
  commands[rate ? 'slots_live_throttled' : 'slots_live_full_rate'] = pb.command;
  const marker = await writeMarker(source);
  const at = consumers.length > 0 ? await waitDecoded(ctl, consumers, marker.lsn, 10 * 60_000) : new Map<string, number>();
  const sourceCpu = serverCpuSeconds(postmaster) - s0;
  const walsenderCpu = consumers.map((x, i) => (cpuSeconds(x.walsender) ?? NaN) - (ws0[i] ?? NaN));
  const consumerCpu = consumers.reduce((a, x, i) => a + (x.child.pid === undefined ? 0 : (cpuSeconds(x.child.pid) ?? 0) - (cs0[i] ?? 0)), 0);
  const sentBytes = consumers.map((x, i) => (writtenBytes(x.child.pid) ?? NaN) - (sent0[i] ?? NaN));
  const changes = (await settledRowChanges(source)) - changes0;
  return {
    runs: 1,
    seconds: pb.seconds,
    transactions: pb.transactions,
    tps: pb.tps,
    tpsRuns: [pb.tps],
    changes,
    walBytes: await lsnDiff(source, marker.lsn, lsn0),
    sourceCpu,
    walsenderCpu,
    consumerCpu,
    sentBytes,
    catchUpSeconds: at.size === 0 ? 0 : (Math.max(...at.values()) - ended) / 1000,
  };
}

/** Two live runs of one configuration as one: sums, and the tps over both; the longest catch-up. */
function addLive(a: SlotsLive | undefined, b: SlotsLive): SlotsLive {
  if (!a) return b;
  const seconds = a.seconds + b.seconds;
  const transactions = a.transactions + b.transactions;
  return {
    runs: a.runs + b.runs,
    seconds,
    transactions,
    // pgbench's own tps of each run, weighted by its seconds.
    tps: (a.tps * a.seconds + b.tps * b.seconds) / seconds,
    tpsRuns: [...a.tpsRuns, ...b.tpsRuns],
    changes: a.changes + b.changes,
    walBytes: a.walBytes + b.walBytes,
    sourceCpu: a.sourceCpu + b.sourceCpu,
    walsenderCpu: a.walsenderCpu.map((x, i) => x + (b.walsenderCpu[i] ?? NaN)),
    consumerCpu: a.consumerCpu + b.consumerCpu,
    sentBytes: a.sentBytes.map((x, i) => x + (b.sentBytes[i] ?? NaN)),
    catchUpSeconds: Math.max(a.catchUpSeconds, b.catchUpSeconds),
  };
}
