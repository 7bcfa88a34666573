/**
 * The results: the table (plain text for the terminal, markdown for bench/results/latest.md), the
 * notes around it, and the files bench/results/latest.{json,md} (quick.tmp.json for --quick).
 */
import fs from 'node:fs';
import path from 'node:path';
import { baselineName } from './baseline.js';
import type { ConvertCpu, ConvertResults, ConvertRun, CopyResults, DrainResults, PeerCopy, Results, SlotsConfig, SlotsLive, SlotsResults, VerifyRate, WalbridgeDrain } from './context.js';
import { ALL_TABLES } from './dataset.js';

export type Cell = string;

export interface Row {
  scenario: string;
  walbridge: Cell;
  native?: Cell;
  pgdump?: Cell;
  pgcopydb?: Cell;
  /** How many times faster walbridge is than native logical replication (> 1: walbridge ahead). */
  ratio?: Cell;
  /** --baseline rows: how many times faster the current build is than the baseline (> 1: current ahead). */
  vsBaseline?: Cell;
}

export const HEADERS = ['scenario', 'walbridge', 'native', 'pg_dump|psql', 'pgcopydb', 'walbridge vs native'];
const BASELINE_HEADER = 'current vs baseline';

/** The columns: the last one only with --baseline, so that a run without it prints what it always did. */
function headersOf(rows: Row[]): string[] {
  return rows.some((r) => r.vsBaseline !== undefined) ? [...HEADERS, BASELINE_HEADER] : HEADERS;
}

function cells(r: Row, n: number): string[] {
  return [r.scenario, r.walbridge, r.native ?? '', r.pgdump ?? '', r.pgcopydb ?? '', r.ratio ?? '', r.vsBaseline ?? ''].slice(0, n);
}

export function textTable(rows: Row[]): string {
  const headers = headersOf(rows);
  return textGrid(headers, rows.map((r) => cells(r, headers.length)));
}

export function markdownTable(rows: Row[]): string {
  const headers = headersOf(rows);
  return markdownGrid(headers, rows.map((r) => cells(r, headers.length)));
}

/** Any table as aligned plain text. */
function textGrid(headers: string[], body: string[][]): string {
  const all = [headers, ...body];
  const widths = headers.map((_, i) => Math.max(...all.map((r) => [...(r[i] ?? '')].length)));
  const line = (r: string[]) =>
    r
      .map((c, i) => c + ' '.repeat((widths[i] ?? 0) - [...c].length))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}

/** Any table in markdown. */
function markdownGrid(headers: string[], body: string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return [`| ${headers.map(esc).join(' | ')} |`, `|${headers.map(() => '---').join('|')}|`, ...body.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

export const fmt = {
  s: (x: number | undefined | null, digits = 1) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(digits)} s`),
  n: (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : Math.round(x).toLocaleString('en-US')),
  mb: (bytes: number | undefined | null) => (bytes === undefined || bytes === null || !Number.isFinite(bytes) ? '–' : `${(bytes / 1048576).toFixed(0)} MB`),
  x: (x: number | undefined | null) => (x === undefined || x === null || !Number.isFinite(x) ? '–' : `${x.toFixed(2)}x`),
};

function ratio(a: number | undefined, b: number | undefined): string {
  return a && b ? fmt.x(a / b) : '';
}

function peerCell(p: PeerCopy | undefined): string {
  if (!p) return '';
  if (p.error) return `failed: ${p.error.split('\n')[0]?.slice(0, 60)}`;
  return fmt.s(p.seconds);
}

/** The rows of one backlog drain (`bd`: the baseline's drain of the same backlog). */
function drainRows(d: DrainResults, bd: WalbridgeDrain | undefined, base: string, cores: number): Row[] {
  const rows: Row[] = [];
  const what = d.workload === 'app' ? '' : `, ${d.workload} workload`;
  rows.push({
    scenario: `backlog drain${what} (changes/s; ${fmt.n(d.backlog.changes)} changes)`,
    walbridge: d.walbridge.error ? 'failed' : fmt.n(d.walbridge.changesPerSec),
    native: d.native.error ? 'failed' : fmt.n(d.native.changesPerSec),
    ratio: ratio(d.walbridge.changesPerSec, d.native.changesPerSec),
  });
  if (bd) {
    rows.push({
      scenario: `${base} backlog drain${what} (changes/s)`,
      walbridge: bd.error ? 'failed' : fmt.n(bd.changesPerSec),
      vsBaseline: ratio(d.walbridge.changesPerSec, bd.changesPerSec),
    });
  }
  rows.push({
    scenario: `backlog drain${what} (tx/s; ${fmt.n(d.backlog.transactions)} tx)`,
    walbridge: fmt.n(d.walbridge.txPerSec),
    native: fmt.n(d.native.txPerSec),
    ratio: ratio(d.walbridge.txPerSec, d.native.txPerSec),
  });
  rows.push({ scenario: `backlog drain${what} (s)`, walbridge: fmt.s(d.walbridge.seconds), native: fmt.s(d.native.seconds), ratio: ratio(d.native.seconds, d.walbridge.seconds) });
  if (bd) rows.push({ scenario: `${base} backlog drain${what} (s)`, walbridge: fmt.s(bd.seconds), vsBaseline: ratio(bd.seconds, d.walbridge.seconds) });
  const total = (c: Record<string, number> | undefined) => (c ? cpuTotal(c) : undefined);
  const cell = (c: Record<string, number> | undefined) => (c ? `${fmt.s(total(c))} (${Object.entries(c).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')})` : '');
  if (d.walbridge.cpu || d.native.cpu) {
    rows.push({ scenario: '  drain: CPU seconds, every process of each', walbridge: cell(d.walbridge.cpu), native: cell(d.native.cpu), ratio: ratio(total(d.native.cpu), total(d.walbridge.cpu)) });
  }
  if (bd?.cpu) rows.push({ scenario: `${base} drain${what}: CPU seconds, every process`, walbridge: cell(bd.cpu), vsBaseline: ratio(total(bd.cpu), total(d.walbridge.cpu)) });
  if (d.decodeOnly) {
    rows.push({
      scenario: `  the source's walsender alone (pg_recvlogical to /dev/null; changes/s${d.decodeOnly.runs && d.decodeOnly.runs.length > 1 ? `, the fastest of ${d.decodeOnly.runs.length} reads` : ''})`,
      walbridge: d.decodeOnly.error ? 'failed' : `${fmt.n(d.decodeOnly.changesPerSec)}${d.native.changesPerSec && d.decodeOnly.changesPerSec ? ` = ${fmt.x(d.decodeOnly.changesPerSec / d.native.changesPerSec)} native` : ''}`,
    });
    rows.push({
      scenario: "  walbridge's drain as a share of the walsender's own pace",
      walbridge: d.walbridge.changesPerSec && d.decodeOnly.changesPerSec ? `${((100 * d.walbridge.changesPerSec) / d.decodeOnly.changesPerSec).toFixed(0)}%` : '',
      native: d.native.changesPerSec && d.decodeOnly.changesPerSec ? `${((100 * d.native.changesPerSec) / d.decodeOnly.changesPerSec).toFixed(0)}%` : '',
    });
  }
  rows.push(...drainCeilingRows(d, cores));
  return rows;
}

/**
 * What the cores allow: the consumer's processes need at least (their CPU seconds / cores) of
 * wall time, however well they overlap, so on this machine no drain of the backlog can beat
 * changes / that. Shown as a share of the walsender's own pace (measured with the whole machine
 * to itself), and again as if walbridge's process cost nothing: what is left is the servers' work.
 */
function drainCeilingRows(d: DrainResults, cores: number): Row[] {
  const walsenderPace = d.decodeOnly?.changesPerSec;
  const cpu = d.walbridge.cpu;
  if (!walsenderPace || !cpu) return [];
  const ceiling = (cpuSeconds: number | undefined) => {
    if (!cpuSeconds) return '';
    const pace = d.backlog.changes / (cpuSeconds / cores);
    return `${fmt.n(pace)} = ${((100 * pace) / walsenderPace).toFixed(0)}%`;
  };
  return [
    {
      scenario: `  the ceiling these CPU seconds allow on ${cores} cores (changes/s = share of the walsender's pace)`,
      walbridge: ceiling(cpuTotal(cpu)),
      native: d.native.cpu ? ceiling(cpuTotal(d.native.cpu)) : '',
    },
    { scenario: "    the same, were walbridge's own process free (its walsender and target sessions only)", walbridge: ceiling(cpuTotal(cpu) - (cpu.daemon ?? 0)) },
  ];
}

/**
 * The copy's counterpart: the machine's CPU seconds during a copy over the cores are the least
 * time that copy could take here. Its ratio column: native's time over that least time, the
 * most "walbridge vs native" this machine allows at walbridge's CPU cost (and without the
 * relay's own share, at the servers' cost alone).
 */
function copyCeilingRows(c: CopyResults, cores: number): Row[] {
  const wb = c.walbridge;
  if (wb.machineCpuSeconds === undefined) return [];
  const least = (p: PeerCopy) => (p.machineCpuSeconds === undefined ? '' : fmt.s(p.machineCpuSeconds / cores));
  const rows: Row[] = [
    {
      scenario: `  the least time these CPU seconds need on ${cores} cores (s)`,
      walbridge: least(wb),
      native: least(c.native),
      pgdump: least(c.pgdump),
      pgcopydb: least(c.pgcopydb),
      ratio: ratio(c.native.seconds, wb.machineCpuSeconds / cores),
    },
  ];
  if (wb.daemonCpuSeconds !== undefined) {
    const servers = wb.machineCpuSeconds - wb.daemonCpuSeconds;
    rows.push({
      scenario: `    the same without walbridge's own process (${fmt.s(wb.daemonCpuSeconds)} of CPU): the servers' work alone`,
      walbridge: fmt.s(servers / cores),
      ratio: ratio(c.native.seconds, servers / cores),
    });
  }
  return rows;
}

function buildRows(r: Results): Row[] {
  const rows: Row[] = [];
  /** --baseline: the label of its rows, each right under the current build's figure it compares with. */
  const base = r.baseline ? `  ${baselineName(r.baseline.commit)}:` : '';
  if (r.copy) {
    const wb = r.copy.walbridge;
    rows.push({
      scenario: `initial copy (s, ${fmt.mb(r.dataset?.bytes)})`,
      walbridge: peerCell(wb),
      native: peerCell(r.copy.native),
      pgdump: peerCell(r.copy.pgdump),
      pgcopydb: peerCell(r.copy.pgcopydb),
      ratio: ratio(r.copy.native.seconds, wb.seconds),
    });
    const bc = r.baseline?.copy;
    if (bc) rows.push({ scenario: `${base} initial copy (s)`, walbridge: peerCell(bc), vsBaseline: ratio(bc.seconds, wb.seconds) });
    if (wb.backfillSeconds !== undefined) rows.push({ scenario: '  walbridge: of which backfill (s)', walbridge: fmt.s(wb.backfillSeconds) });
    const cpu = (p: PeerCopy | undefined) => (p?.machineCpuSeconds === undefined ? '' : fmt.s(p.machineCpuSeconds));
    if (wb.machineCpuSeconds !== undefined) {
      rows.push({
        scenario: '  copy: CPU seconds of the whole machine',
        walbridge: cpu(wb),
        native: cpu(r.copy.native),
        pgdump: cpu(r.copy.pgdump),
        pgcopydb: cpu(r.copy.pgcopydb),
        ratio: ratio(r.copy.native.machineCpuSeconds, wb.machineCpuSeconds),
      });
    }
    if (bc?.machineCpuSeconds !== undefined) {
      rows.push({ scenario: `${base} copy CPU seconds of the whole machine`, walbridge: cpu(bc), vsBaseline: ratio(bc.machineCpuSeconds, wb.machineCpuSeconds) });
    }
    rows.push(...copyCeilingRows(r.copy, r.machine.cpus));
  }
  if (r.drain) rows.push(...drainRows(r.drain, r.baseline?.drain, base, r.machine.cpus));
  if (r.drainSessions) rows.push(...drainRows(r.drainSessions, r.baseline?.drainSessions, base, r.machine.cpus));
  for (const [live, how] of [[r.live, 'full rate'], [r.liveSteady, 'throttled']] as const) {
    if (live) {
      const native = how === 'full rate' ? r.liveNative : undefined;
      rows.push({
        scenario: `live lag p50 / p99 (s), pgbench ${how}: ${live.pgbenchTps.toFixed(0)} tps${native && !native.error ? ` (native run: ${native.pgbenchTps.toFixed(0)} tps)` : ''}`,
        walbridge: `${fmt.s(live.lag.p50, 2)} / ${fmt.s(live.lag.p99, 2)}`,
        native: native ? (native.error ? 'failed' : `${fmt.s(native.lag.p50, 2)} / ${fmt.s(native.lag.p99, 2)}`) : '',
      });
    }
  }
  if (r.bigtxn) {
    rows.push({
      scenario: `${fmt.n(r.bigtxn.rows)}-row txn: apply s / peak RSS`,
      walbridge: r.bigtxn.error ? 'failed' : `${fmt.s(r.bigtxn.applySeconds)} / ${(r.bigtxn.peakRssMb ?? 0).toFixed(0)} MB`,
    });
  }
  const rss = Object.entries(r.rssMb).filter(([k]) => k !== 'liveDaemonHwm');
  if (rss.length > 0) rows.push({ scenario: 'peak RSS (MB) per scenario', walbridge: rss.map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', ') });
  const baseRss = Object.entries({ copy: r.baseline?.copy?.peakRssMb, drain: r.baseline?.drain?.peakRssMb }).filter((e): e is [string, number] => e[1] !== undefined);
  if (baseRss.length > 0) {
    rows.push({
      scenario: `${base} peak RSS (MB)`,
      walbridge: baseRss.map(([k, v]) => `${k} ${v.toFixed(0)}`).join(', '),
      vsBaseline: baseRss.map(([k, v]) => `${k} ${ratio(v, r.rssMb[k]) || '–'}`).join(', '),
    });
  }
  if (r.wal && !r.wal.error) {
    rows.push({
      scenario: 'retained WAL during copy (max MB)',
      walbridge: `${fmt.mb(r.wal.maxRetainedBytes)} (load wrote ${fmt.mb(r.wal.loadWalBytes)} in ${fmt.s(r.wal.copySeconds, 0)})`,
    });
    rows.push({
      scenario: '  then spool applied in (s) / max retained until streaming',
      walbridge: `${r.wal.catchUpSeconds === null ? 'not within 5 min' : fmt.s(r.wal.catchUpSeconds)} / ${fmt.mb(r.wal.maxRetainedUntilStreamingBytes)}`,
    });
  } else if (r.wal?.error) rows.push({ scenario: 'retained WAL during copy (max MB)', walbridge: 'failed' });
  if (r.wan) {
    if (r.wan.skipped) rows.push({ scenario: 'WAN', walbridge: `skipped: ${r.wan.skipped}` });
    else if (r.wan.error) rows.push({ scenario: 'WAN', walbridge: 'failed' });
    else {
      rows.push({
        scenario: `WAN +${r.wan.rttMs} ms: copy MB/s (vs loopback)`,
        walbridge: `${(r.wan.copyMBps ?? 0).toFixed(1)} (${((100 * (r.wan.copyMBps ?? 0)) / (r.wan.loopbackCopyMBps ?? 1)).toFixed(0)}%)`,
      });
      if (r.wan.proxyCopyMBps) {
        rows.push({
          scenario: `WAN +${r.wan.rttMs} ms: copy MB/s vs the same proxy with no delay`,
          walbridge: `${(r.wan.copyMBps ?? 0).toFixed(1)} vs ${r.wan.proxyCopyMBps.toFixed(1)} (${((100 * (r.wan.copyMBps ?? 0)) / r.wan.proxyCopyMBps).toFixed(0)}%)`,
        });
      }
      rows.push({
        scenario: `WAN +${r.wan.rttMs} ms: drain changes/s (vs loopback)`,
        walbridge: `${fmt.n(r.wan.drainChangesPerSec)}${r.wan.loopbackDrainChangesPerSec ? ` (${((100 * (r.wan.drainChangesPerSec ?? 0)) / r.wan.loopbackDrainChangesPerSec).toFixed(0)}%)` : ''}`,
      });
      if (r.wan.drainStartupSeconds !== undefined) {
        rows.push({
          scenario: `WAN +${r.wan.rttMs} ms: daemon start to streaming (s; vs loopback)`,
          walbridge: `${fmt.s(r.wan.drainStartupSeconds)}${r.wan.loopbackDrainStartupSeconds !== undefined ? ` (${fmt.s(r.wan.loopbackDrainStartupSeconds)})` : ''}`,
        });
      }
    }
  }
  if (r.cutover) rows.push(...cutoverRows(r.cutover));
  return rows;
}

/** The write pause per scale (median, each run, the split), the old way's, and verify throughput next to pgcopydb. */
function cutoverRows(c: NonNullable<Results['cutover']>): Row[] {
  const rows: Row[] = [];
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length === 0 ? undefined : s.length % 2 ? s[m] : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
  };
  const base = c.scales.find((s) => s.multiple === 1)?.medianPausedSeconds;
  for (const s of c.scales) {
    const size = `${s.multiple}x: ${fmt.mb(s.tableBytes)} of tables`;
    const ok = s.runs.filter((x) => x.pausedSeconds !== undefined);
    const paused = ok.map((x) => x.pausedSeconds as number);
    const failed = s.runs.length - ok.length;
    rows.push({
      scenario: `cutover: writes paused (s), pgbench full rate, median of ${paused.length} (${size})`,
      walbridge:
        paused.length === 0
          ? 'failed'
          : `${fmt.s(s.medianPausedSeconds, 2)} (${paused.map((p) => p.toFixed(2)).join(', ')})` +
            (s.multiple !== 1 && base && s.medianPausedSeconds !== undefined ? ` = ${fmt.x(s.medianPausedSeconds / base)} the 1x pause` : '') +
            (failed > 0 ? `; ${failed} run(s) failed` : ''),
    });
    const splits = ok.map((x) => x.split).filter((x): x is NonNullable<typeof x> => x !== undefined);
    if (splits.length > 0) {
      const part = (k: keyof (typeof splits)[number]) => fmt.s(med(splits.map((x) => x[k])), 2);
      rows.push({
        scenario: '  of which (medians): fence raised / applied up to it / sequences / changed rows checked',
        walbridge: `${part('fence')} / ${part('apply')} / ${part('sequences')} / ${part('check')} (${fmt.n(med(ok.map((x) => x.rowsCheckedInPause ?? NaN)))} rows)`,
      });
    }
    const o = s.oldWay;
    if (o) {
      rows.push({
        scenario: `  the old way (app stopped → recorded: quiet period + full verify; 1 run)`,
        walbridge: o.error
          ? 'failed'
          : `${fmt.s(o.pausedSeconds)} (quiet ${fmt.s(o.quietSeconds)}, verify ${fmt.s(o.verifySeconds)})` +
            (s.medianPausedSeconds ? ` = ${((o.pausedSeconds ?? 0) / s.medianPausedSeconds).toFixed(0)}x the fence's` : ''),
      });
    }
  }
  for (const s of c.scales) {
    const v = s.verify;
    if (!v) continue;
    const cell = (x: VerifyRate) => (x.error ? `failed: ${x.error.split('\n')[0]?.slice(0, 60)}` : `${x.mbps?.toFixed(0)} MB/s (${fmt.s(x.seconds)})`);
    rows.push({
      scenario: `verify throughput (MB/s of table data, ${s.multiple}x: ${fmt.mb(s.tableBytes)})`,
      walbridge: cell(v.walbridge) + (v.walbridge.mbps && v.pgcopydb.mbps ? ` = ${fmt.x(v.walbridge.mbps / v.pgcopydb.mbps)} pgcopydb` : ''),
      pgcopydb: v.pgcopydb.error ? (v.pgcopydb.error === 'no pgcopydb with compare data' ? 'no compare data' : cell(v.pgcopydb)) : cell(v.pgcopydb),
    });
  }
  return rows;
}

/** The convert scenario's own table: unconverted and converted side by side, and their ratio. */
function convertTable(c: ConvertResults): { headers: string[]; body: string[][] } {
  const u = c.unconverted;
  const k = c.converted;
  const headers = [
    `convert: ${c.table}, ${fmt.n(c.rows)} rows, ${c.dims} dims, ${fmt.mb(c.tableBytes)} (${fmt.mb(c.textBytes)} as text)`,
    'unconverted (vector → vector)',
    'converted (vector_to_float32le → bytea)',
    'converted / unconverted',
  ];
  const failed = (r: ConvertRun) => (r.error ? `failed: ${r.error.split('\n')[0]?.slice(0, 60)}` : '–');
  const row = (label: string, get: (r: ConvertRun) => number | undefined, show: (x: number) => string): string[] => {
    const a = get(u);
    const b = get(k);
    return [label, a === undefined ? failed(u) : show(a), b === undefined ? failed(k) : show(b), a !== undefined && b !== undefined && a !== 0 ? fmt.x(b / a) : ''];
  };
  const cpu = (which: keyof ConvertCpu, of: 'copy' | 'stream') => (r: ConvertRun) => r[of]?.cpu[which];
  const body = [
    row('copy: daemon start → streaming (s)', (r) => r.copy?.seconds, (x) => fmt.s(x)),
    row('copy: the table (s; walbridge\'s log)', (r) => r.copy?.tableSeconds, (x) => fmt.s(x)),
    ['  COPY format', u.copy?.format ?? '–', k.copy?.format ? `${k.copy.format}, staged, then INSERT … SELECT` : '–', ''],
    row('copy: MB/s (source table bytes / s)', (r) => r.copy?.mbps, (x) => x.toFixed(1)),
    row('copy: rows/s', (r) => r.copy?.rowsPerSec, (x) => fmt.n(x)),
    row('copy: CPU s, source server', cpu('source', 'copy'), (x) => fmt.s(x)),
    row('copy: CPU s, target server', cpu('target', 'copy'), (x) => fmt.s(x)),
    row('copy: CPU s, walbridge daemon', cpu('daemon', 'copy'), (x) => fmt.s(x)),
    row(`stream: ${fmt.n(c.updates)} one-row updates of the vector, changes/s`, (r) => r.stream?.changesPerSec, (x) => fmt.n(x)),
    row('stream: streaming → the last applied (s)', (r) => r.stream?.streamSeconds, (x) => fmt.s(x)),
    row('stream: CPU s, source server', cpu('source', 'stream'), (x) => fmt.s(x)),
    row('stream: CPU s, target server', cpu('target', 'stream'), (x) => fmt.s(x)),
    row('stream: CPU s, walbridge daemon', cpu('daemon', 'stream'), (x) => fmt.s(x)),
  ];
  return { headers, body };
}

/** The convert scenario's notes: where the target's time went, the expression alone, the checks. */
function convertNotes(c: ConvertResults): string[] {
  const out: string[] = [`convert (${c.conversion}; the scenario took ${fmt.s(c.seconds, 0)}, building its table ${fmt.s(c.buildSeconds, 0)}):`];
  if (c.updatesSeconds !== undefined) out.push(`  updates: ${fmt.n(c.updates)} transactions written in ${fmt.s(c.updatesSeconds)}, ${fmt.mb(c.updatesWalBytes)} of WAL`);
  for (const side of ['unconverted', 'converted'] as const) {
    const r = c[side];
    if (r.copy?.targetWork.length) {
      out.push(`  ${side} copy, walbridge's sessions on the target (session-seconds, pg_stat_activity every 100 ms): ${r.copy.targetWork.map(([w, x]) => `${w} ${x.toFixed(1)}`).join(', ')}`);
    }
    if (r.copy) out.push(`  ${side} copy check: ${r.copy.check}`);
    if (r.stream) out.push(`  ${side} stream check: ${r.stream.check}`);
    if (r.stream) out.push(`  ${side} stream, walbridge's own processes (CPU s): ${Object.entries(r.stream.walbridgeCpu).map(([p, x]) => `${p} ${x.toFixed(1)}`).join(', ')}`);
    if (r.error) out.push(`  ${side}: failed: ${r.error.split('\n').slice(0, 3).join(' | ')}`);
  }
  const o = c.sourceTextOutput;
  if (o) {
    out.push(
      `  with real pgvector the source would also print every element for the converted copy's text COPY (vector_out; the stand-in is text already): ` +
        `float4 output costs ${o.nsPerElement.toFixed(0)} ns per element on the source here, about ${fmt.s(o.estimatedSeconds)} of source CPU for this table`,
    );
  }
  const e = c.expression;
  if (e) {
    out.push(
      `  the conversion expression alone on the target (sum(length(...)) over the ${fmt.n(e.elements)} elements as text): ${fmt.s(e.convertSeconds, 2)} ` +
        `against ${fmt.s(e.readSeconds, 2)} reading the text alone: ${e.nsPerElement.toFixed(0)} ns per element`,
    );
  }
  return out;
}

const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
/** CPU seconds of every process of a consumer, together. */
const cpuTotal = (byProcess: Record<string, number>) => sum(Object.values(byProcess));
const perK = (x: number, tx: number) => (1000 * x) / tx;
const each = (xs: number[], f: (x: number) => string) => xs.map(f).join(' / ');

/** The slots scenario's two tables: the backlog decoded by each set of slots, then the live load with each. */
function slotsTables(c: SlotsResults): Array<{ headers: string[]; body: string[][] }> {
  const out: Array<{ headers: string[]; body: string[][] }> = [];
  const one = c.configs.find((x) => x.name === 'one');
  const b = c.backlog;
  if (b) {
    const wal = b.walBytes / 1048576;
    const d1 = one?.drain;
    const body = c.configs
      .filter((x) => x.drain || (x.error && x.slots.length > 0))
      .map((x): string[] => {
        const d = x.drain;
        if (!d) return [x.label, `failed: ${x.error?.split('\n')[0]?.slice(0, 60) ?? ''}`, '', '', '', '', '', '', ''];
        const w = sum(d.walsenderCpu);
        return [
          x.label,
          fmt.s(Math.max(...d.seconds), 2),
          each(d.seconds, (s) => (wal / s).toFixed(0)),
          each(d.seconds, (s) => fmt.n(b.changes / s)),
          `${w.toFixed(2)} s${d.walsenderCpu.length > 1 ? ` (${each(d.walsenderCpu, (v) => v.toFixed(2))})` : ''}`,
          d1 ? fmt.x(w / sum(d1.walsenderCpu)) : '',
          fmt.s(d.sourceCpu, 2),
          d1 ? fmt.x(d.sourceCpu / d1.sourceCpu) : '',
          each(d.sentBytes, (v) => (v / 1048576).toFixed(1)),
        ];
      });
    out.push({
      headers: [
        `one backlog (${fmt.n(b.transactions)} tx, ${fmt.n(b.changes)} changes, ${fmt.mb(b.walBytes)} of WAL) decoded by each set of slots at once`,
        'all done',
        'MB of WAL/s, each walsender',
        'changes decoded/s, each',
        'walsenders CPU s (each)',
        'vs 1 slot',
        'source CPU s',
        'vs 1 slot',
        'MB sent, each slot',
      ],
      body,
    });
  }
  for (const which of ['steady', 'live'] as const) {
    const l1 = one?.[which];
    const runs = c.configs.filter((x) => x[which] || x.error);
    if (!runs.some((x) => x[which])) continue;
    const body = runs.map((x): string[] => {
      const l = x[which];
      if (!l) return [x.label, `failed: ${x.error?.split('\n')[0]?.slice(0, 60) ?? ''}`, '', '', '', '', '', '', ''];
      const w = sum(l.walsenderCpu);
      return [
        x.label,
        l.tps.toFixed(0),
        // Throttled, the tps is the rate asked for: no ratio.
        l1 && which === 'live' ? fmt.x(l.tps / l1.tps) : '',
        perK(l.sourceCpu, l.transactions).toFixed(3),
        l1 ? fmt.x(l.sourceCpu / l.transactions / (l1.sourceCpu / l1.transactions)) : '',
        l.walsenderCpu.length === 0 ? '0' : `${perK(w, l.transactions).toFixed(3)}${l.walsenderCpu.length > 1 ? ` (${each(l.walsenderCpu, (v) => perK(v, l.transactions).toFixed(3))})` : ''}`,
        l1 && l.walsenderCpu.length > 0 ? fmt.x(w / l.transactions / (sum(l1.walsenderCpu) / l1.transactions)) : '',
        l.walsenderCpu.length === 0 ? '' : fmt.s(l.catchUpSeconds, 2),
        each(l.sentBytes, (v) => perK(v / 1048576, l.transactions).toFixed(2)),
      ];
    });
    out.push({
      headers: [
        `pgbench ${which === 'steady' ? `throttled to ${c.steadyRate} tps` : 'at full rate'} (-c ${c.clients}), ${c.rounds} × ${c.liveSeconds} s, with these slots read at once`,
        'tps',
        'vs 1 slot',
        'source CPU s / 1k tx',
        'vs 1 slot',
        'walsenders CPU s / 1k tx (each)',
        'vs 1 slot',
        'caught up after the load',
        'MB sent / 1k tx, each slot',
      ],
      body,
    });
  }
  return out;
}

/** What one more slot costs, relative to the one slot: from the backlog and from the live load. */
function slotsNotes(c: SlotsResults): string[] {
  const out: string[] = [`slots (the scenario took ${fmt.s(c.seconds, 0)}):`];
  const one = c.configs.find((x) => x.name === 'one');
  const pct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(0)}%`;
  const extra = (x: SlotsConfig) => x.slots.length - 1;
  for (const x of c.configs) {
    if (!one || x === one || extra(x) < 1) continue;
    const n = extra(x);
    const parts: string[] = [];
    if (x.drain && one.drain) {
      const w1 = sum(one.drain.walsenderCpu);
      parts.push(
        `backlog: walsender CPU ${pct((sum(x.drain.walsenderCpu) - w1) / n / w1)} of the one slot's per extra slot, whole source ${pct((x.drain.sourceCpu - one.drain.sourceCpu) / n / one.drain.sourceCpu)}, ` +
          `all decoded in ${fmt.x(Math.max(...x.drain.seconds) / Math.max(...one.drain.seconds))} the time`,
      );
    }
    for (const which of ['steady', 'live'] as const) {
      const l = x[which];
      const l1 = one[which];
      if (!l || !l1) continue;
      const w1 = sum(l1.walsenderCpu) / l1.transactions;
      const s1 = l1.sourceCpu / l1.transactions;
      parts.push(
        `${which === 'steady' ? `${c.steadyRate} tps` : 'full rate'}: walsender CPU per tx ${pct((sum(l.walsenderCpu) / l.transactions - w1) / n / w1)}, whole source per tx ${pct((l.sourceCpu / l.transactions - s1) / n / s1)}` +
          (which === 'live' ? `, tps ${pct((l.tps / l1.tps - 1) / n)}` : ''),
      );
    }
    if (parts.length) out.push(`  each extra slot, ${x.label}: ${parts.join('; ')}`);
  }
  const idle = c.configs.find((x) => x.name === 'idle');
  if (idle?.drain) {
    const [all, quiet] = idle.drain.walsenderCpu;
    const [sentAll, sentQuiet] = idle.drain.sentBytes;
    out.push(
      `  the idle slot (${idle.slots[1]?.tables.join(', ')}): over the backlog its walsender used ${fmt.s(quiet, 2)} of CPU against ${fmt.s(all, 2)} for every table's slot ` +
        `(${fmt.x((quiet ?? NaN) / (all ?? NaN))}), and its pg_recvlogical wrote ${fmt.n(sentQuiet)} byte(s) against ${fmt.mb(sentAll)}`,
    );
  }
  if (c.idleTableChanges !== undefined) out.push(`  rows the load wrote to the idle slot's table during the scenario: ${fmt.n(c.idleTableChanges)}`);
  for (const x of c.configs) {
    const cons = [x.drain ? `backlog ${x.drain.consumerCpu.toFixed(2)} s` : '', x.steady ? `${c.steadyRate} tps ${x.steady.consumerCpu.toFixed(2)} s` : '', x.live ? `full rate ${x.live.consumerCpu.toFixed(2)} s` : ''].filter(Boolean);
    if (x.slots.length > 0 && cons.length) out.push(`  pg_recvlogical's own CPU (on this machine, not the source's in a deployment), ${x.label}: ${cons.join(', ')}`);
    for (const [how, l] of [[`${c.steadyRate} tps`, x.steady], ['full rate', x.live]] as const) {
      if (!l) continue;
      out.push(
        `  ${how}, ${x.label}: ${fmt.n(l.transactions)} tx in ${fmt.s(l.seconds, 0)} (tps of each run: ${l.tpsRuns.map((t) => t.toFixed(0)).join(', ')}), ` +
          `${fmt.n(l.changes / l.seconds)} changes/s, ${(l.walBytes / 1048576 / l.seconds).toFixed(1)} MB of WAL/s` +
          (x.slots.length > 0 ? ', all of it decoded by each walsender' : ''),
      );
    }
    const rest = (l: SlotsLive | undefined) => (l ? perK(l.sourceCpu - sum(l.walsenderCpu), l.transactions).toFixed(3) : '–');
    if (x.steady || x.live) out.push(`  the source without its walsenders (the load's backends, checkpointer, …), CPU s / 1k tx, ${x.label}: ${c.steadyRate} tps ${rest(x.steady)}, full rate ${rest(x.live)}`);
    if (x.error) out.push(`  ${x.label}: failed: ${x.error.split('\n').slice(0, 3).join(' | ')}`);
  }
  return out;
}

const SLOTS_MEANINGS = [
  '- slots: what each logical replication slot costs the source. Every slot\'s walsender decodes all of the WAL, the tables',
  '  outside its publication included (pgoutput drops their changes after decoding them). Each slot is read by its own',
  '  pg_recvlogical (pgoutput, proto_version 1, to /dev/null: a consumer that does nothing), its publication (FOR TABLE, as',
  '  walbridge makes its own) splitting the tables so that each is in one publication of a set; the idle slot\'s publication',
  '  holds one small table the load never writes. Backlog: every set\'s slots created at one position, one pgbench backlog',
  '  (bench/app.pgbench) written with no consumer, then each set\'s slots read at once to the marker after it: "all done" = the',
  '  slowest; per walsender, seconds from starting its pg_recvlogical until pg_stat_replication.sent_lsn passed the marker (a',
  '  logical walsender\'s sent_lsn is the end of the last record it decoded, sent or not); MB of WAL/s and changes/s = the',
  '  backlog\'s over those seconds. Live: with a set\'s slots (fresh, created just before) read at once, pgbench throttled',
  '  (-R: the same work in every set, so the CPU seconds compare as they are), then at its full rate (the tps it keeps);',
  '  each set once per round, the second round in reverse order; CPU from pgbench\'s start until every walsender passed the',
  '  marker after it. Autovacuum is off during the scenario, a VACUUM before each set\'s runs (not measured) does its work.',
  '  CPU s: /proc; the whole source = its postmaster and every process it runs or reaped meanwhile (the',
  '  load\'s backends included); a walsender = its slot\'s active_pid. MB sent: what each pg_recvlogical wrote (/proc wchar:',
  '  the pgoutput messages it received, a newline each). vs 1 slot: the set\'s figure / the one slot\'s (> 1x: costs more).',
  '  Everything shares two cores here (with whatever else runs on the machine): at full rate the walsenders take CPU from',
  '  the load, so fewer tps, but the tps of one set swings between runs more than that (each run\'s tps is in the notes);',
  '  the walsenders\' CPU seconds are the steady figure.',
];

const CONVERT_MEANINGS = [
  '- convert: a table shaped like the app\'s mirt_memories, its embedding a 1536-dimension pgvector vector (a stand-in with',
  '  pgvector\'s text form: a domain over text named vector, its column STORAGE EXTERNAL as a vector\'s bytes do not',
  '  compress; the test servers have no pgvector), copied by walbridge into a target whose column has the same type',
  '  (unconverted: the ordinary copy) and, separately, with WALBRIDGE_CONVERT=…=vector_to_float32le into a bytea column',
  '  (converted: staged as text on the target, inserted through the conversion). MB/s = the source table\'s pg_table_size',
  '  (heap + TOAST) / the table\'s copy seconds (walbridge\'s log). CPU s: each server whole (its postmaster, every process',
  '  it runs, and those that exited meanwhile: /proc, cutime included) and the daemon, from starting the daemon until it',
  '  streams (not the machine\'s: other work on it would count). Stream: one-row updates of the vector written with no',
  '  consumer running, then each daemon in turn from its slot; changes/s over \'streaming changes from the slot\' → the',
  '  marker after them. Checked after the copy and again after the stream: counts, NULLs, every bytea 6,144 bytes, and a',
  '  sample of rows byte by byte against Buffer.writeFloatLE(Math.fround(Number(x))) of the source\'s text.',
];

const MEANINGS = [
  'What the figures mean (same machine, same data, one run; compare ratios, not absolute times):',
  '- initial copy: seconds from start until the target holds every row. walbridge: from starting the daemon until its recorded phase is',
  "  'streaming' (copy + spool applied); native: CREATE SUBSCRIPTION until every table's srsubstate is 'r'; pg_dump|psql and",
  '  pgcopydb: the command\'s wall time. Each into a fresh empty database with the tables and indexes pre-created.',
  '- backlog drain: a backlog written by pgbench (bench/app.pgbench) with no consumer running, then the time from starting the',
  '  consumer (walbridge daemon / ALTER SUBSCRIPTION ENABLE) until a marker transaction written after the backlog is on the',
  '  target. changes/s = row changes (n_tup_ins+upd+del on the source) / that time.',
  '  The sessions workload (bench/sessions.pgbench): each transaction inserts 2 messages and rewrites one session\'s state, a',
  '  jsonb document of about 5 kB (TOASTed); drained the same way after the first, each database vacuumed and analyzed before.',
  "  share of the walsender's pace: the consumer's changes/s over pg_recvlogical's on the same backlog.",
  '- live lag: pgbench at full rate, then throttled (-R), while walbridge streams; the source WAL position is sampled every 100 ms and each sample\'s',
  "  lag is the time until walbridge's recorded applied_lsn on the target passed it; native: its origin's remote_lsn (last commit applied),",
  '  in a run of its own with the same pgbench settings (walbridge stopped meanwhile).',
  '- copy CPU seconds: the busy time of every core of the machine (/proc/stat) while each copy ran: both servers, the tool, all.',
  '- drain CPU seconds: user + system time of every process of each consumer during its drain (walbridge: the daemon, its',
  "  walsender, its target sessions; native: its walsender and apply worker), from /proc. The walsender alone: pg_recvlogical",
  '  reading the same backlog from a copy of the slot to /dev/null, the pace of decoding itself, for any consumer: three',
  '  reads, each from its own copy of the slot, and the fastest counts (a slow read is the machine, not the walsender).',
  '- ceilings: a process cannot run on more than one core, and all of them together on no more than the machine has, so',
  '  CPU seconds / cores is the least wall time the work measured could take here, however well it overlapped. The copy: the',
  "  machine's CPU seconds over the cores, and the same without the walbridge process's own (the servers' work alone); its",
  "  ratio is native's time over that least time. The drain: the backlog's changes over (the consumer's CPU seconds / cores),",
  "  then the same without the daemon's, each as a share of the walsender's own pace: at the CPU cost measured, no drain",
  '  here can pass its ceiling, however it is scheduled.',
  '- big txn: one INSERT … SELECT generate_series of N rows; seconds from its commit on the source until applied on the target.',
  '- peak RSS: highest VmRSS of the walbridge process, sampled every 200 ms, per scenario.',
  "- retained WAL: pg_current_wal_lsn() - restart_lsn of walbridge's slot, sampled every 500 ms while it copies a big table under",
  '  a steady write load; next to it, the WAL the source wrote meanwhile.',
  '- WAN: the same copy and drain with latency added between walbridge and the source. Rates over the work itself, as on',
  '  loopback: copy MB/s over the backfill, drain changes/s from \'streaming changes from the slot\' to the marker; the time',
  '  from starting the daemon to streaming (connections, checks, catalog reads: round trips) is shown on its own line.',
  '- cutover: each run a fresh migration (its own target database, slot and publication) of a source database built for the',
  '  scenario at the run\'s scale and at 4x; pgbench (bench/app.pgbench without its table that has no key) writes at full rate',
  '  while `walbridge cutover` checks every table, then fences the source; writes paused: what the cutover recorded',
  '  (walbridge.cutover.writes_paused_seconds: from the fence to the record). The split: from the times the cutover printed',
  '  its steps; "fence raised" is the rest of the pause. The old way: pgbench stopped, then `walbridge cutover --no-fence`;',
  '  from pgbench\'s exit to the record (walbridge.cutover.at), once per scale.',
  '- verify throughput: `walbridge verify` and `pgcopydb compare data` (in that order), 4 jobs each, on the first migration of',
  '  each scale right after its copy (both read data the copy just brought into memory), no writes; MB/s = pg_table_size',
  '  (heap + TOAST, no index) of every migrated table and partition on the source / the command\'s wall time.',
  '- walbridge vs native: how many times faster walbridge is (> 1x: walbridge ahead).',
];

/** Said only with --baseline. */
const BASELINE_MEANINGS = [
  '- baseline: the build of another commit (--baseline REV), measured the same way right after the current build: its copy into a',
  '  database of its own, its drain of the same backlog from a slot of its own into its own copy of the database.',
  '  current vs baseline: > 1x: the current build is faster or lighter (rates: current / baseline; seconds and MB: baseline / current).',
];

/** The table with what goes around it: `cmd` is the command line that ran the benchmark. */
function render(r: Results, cmd: string): { text: string; md: string } {
  const rows = buildRows(r);
  const head = `walbridge benchmark, ${r.startedAt} — ${r.machine.cpus} cores, node ${r.machine.node}, source ${r.machine.source}, target ${r.machine.target}` +
    (r.machine.pgcopydb ? `, pgcopydb ${r.machine.pgcopydb}` : '');
  const dataset = r.dataset ? `data: scale ${r.options.scale}, ${fmt.mb(r.dataset.bytes)}, ${fmt.n(r.dataset.rows)} rows in ${ALL_TABLES.length} tables` : '';
  const extra: string[] = [];
  if (r.baseline) extra.push(`baseline: ${r.baseline.rev} = ${r.baseline.commit} "${r.baseline.subject}"`);
  const meanings = [...MEANINGS, ...(r.baseline ? BASELINE_MEANINGS : []), ...(r.convert ? CONVERT_MEANINGS : []), ...(r.slots ? SLOTS_MEANINGS : [])];
  if (r.copy?.walbridge.tables?.length) {
    extra.push("walbridge's own per-table copy timings (log 'copy finished'), largest first:");
    for (const t of [...r.copy.walbridge.tables].sort((a, b) => b.bytes - a.bytes).slice(0, 8)) {
      extra.push(`  ${t.table.padEnd(32)} ${fmt.n(t.rows).padStart(10)} rows ${fmt.mb(t.bytes).padStart(7)} ${fmt.s(t.seconds).padStart(8)}  ${(t.bytes / 1048576 / Math.max(t.seconds, 0.001)).toFixed(1)} MB/s`);
    }
  }
  for (const [k, v] of Object.entries({ 'copy checks': [r.copy?.walbridge.check, r.copy?.native.check, r.copy?.pgdump.check, r.copy?.pgcopydb.check], verify: [r.verify?.walbridge, r.drain?.native.check] })) {
    const xs = v.filter((x): x is string => typeof x === 'string');
    if (xs.length) extra.push(`${k}: ${xs.join(' | ')}`);
  }
  if (r.drain?.walbridge.activity) {
    extra.push("walbridge's sessions during the drain (pg_stat_activity every 100 ms: share of samples per state / wait event):");
    for (const [side, xs] of Object.entries(r.drain.walbridge.activity)) {
      for (const [k, v] of xs.slice(0, 6)) extra.push(`  ${side.padEnd(6)} ${(100 * v).toFixed(0).padStart(3)}%  ${k}`);
    }
  }
  if (r.wan?.method) extra.push(`WAN: ${r.wan.method}`);
  if (r.cutover) {
    const c = r.cutover;
    extra.push(`cutover runs (pgbench -c ${c.clients}; pgcopydb for compare data: ${c.pgcopydb ?? '–'}; the scenario took ${fmt.s(c.seconds, 0)}):`);
    for (const s of c.scales) {
      if (s.error) extra.push(`  ${s.multiple}x: failed: ${s.error.split('\n')[0]}`);
      s.runs.forEach((x, i) => {
        if (x.error) {
          extra.push(`  ${s.multiple}x run ${i + 1}: failed: ${x.error.split('\n').slice(0, 3).join(' | ')}`);
          return;
        }
        const sp = x.split;
        extra.push(
          `  ${s.multiple}x run ${i + 1}: paused ${fmt.s(x.pausedSeconds, 2)}` +
            (sp ? ` (fence ${sp.fence.toFixed(2)}, apply ${sp.apply.toFixed(2)}, sequences ${sp.sequences.toFixed(2)}, check ${sp.check.toFixed(2)})` : '') +
            `, ${fmt.n(x.rowsCheckedInPause)} rows checked inside; command ${fmt.s(x.commandSeconds)} (${fmt.s(x.beforeFenceSeconds)} before the fence); ` +
            `pgbench ${x.pgbenchTps === undefined ? '–' : x.pgbenchTps.toFixed(0)} tps, ${x.refusedClients ?? 0} client(s) refused; ${x.check ?? ''}`,
        );
      });
      if (s.oldWay && !s.oldWay.error) extra.push(`  ${s.multiple}x old way: ${s.oldWay.check ?? ''}`);
    }
    const refusal = c.scales.flatMap((s) => s.runs).find((x) => x.refusal)?.refusal;
    if (refusal) extra.push(`  what pgbench was told: ${refusal}`);
  }
  if (r.convert) extra.push(...convertNotes(r.convert));
  if (r.slots) extra.push(...slotsNotes(r.slots));
  if (r.wal && !r.wal.error && r.wal.copySeconds < 20 && !r.options.quick) extra.push(`NOTE: the retained-WAL copy lasted only ${fmt.s(r.wal.copySeconds)} (< 20 s): raise --scale or the table size`);
  if (r.errors.length) extra.push(`ERRORS:\n  ${r.errors.map((e) => e.split('\n').slice(0, 6).join('\n    ')).join('\n  ')}`);
  if (r.profiles) {
    for (const [label, p] of Object.entries(r.profiles)) {
      extra.push(`CPU profile of walbridge (${label}), ${(p.totalMs / 1000).toFixed(1)} s sampled, top self time:`);
      for (const e of p.top.slice(0, 12)) extra.push(`  ${e.percent.toFixed(1).padStart(5)}%  ${e.fn}  ${e.where}`);
    }
  }
  const grids = [...(r.convert ? [convertTable(r.convert)] : []), ...(r.slots ? slotsTables(r.slots) : [])];
  // Only the opt-in scenarios' own tables when no other scenario ran (the main table would be headers alone).
  const main = rows.length > 0 || grids.length === 0;
  const text = [head, dataset, ...(main ? ['', textTable(rows)] : []), ...grids.flatMap((g) => ['', textGrid(g.headers, g.body)]), '', ...extra, '', ...meanings].join('\n');
  const md = [
    `## walbridge benchmark (\`${cmd}\`)`,
    '',
    `${head}.${dataset ? ` ${dataset}.` : ''}`,
    '',
    ...(main ? [markdownTable(rows), ''] : []),
    ...grids.flatMap((g) => [markdownGrid(g.headers, g.body), '']),
    '```',
    ...extra,
    '```',
    '',
    ...meanings.map((l) => l.replace(/^- /, '- ')),
    '',
    'Commands used:',
    '',
    ...Object.entries(r.commands).map(([k, v]) => `- ${k}: \`${v}\``),
    '',
  ].join('\n');
  return { text, md };
}

/**
 * Print the table and write `${outBase}.json` (and `${outBase}.md` if `markdown`).
 * The JSON is `results` as it is: docs and the README quote its shape.
 */
export function writeReport(results: Results, opts: { outBase: string; markdown: boolean; cmd: string }): void {
  const { text, md } = render(results, opts.cmd);
  const { outBase } = opts;
  process.stdout.write(`\n${text}\n`);
  fs.mkdirSync(path.dirname(outBase), { recursive: true });
  fs.writeFileSync(`${outBase}.json`, `${JSON.stringify(results, null, 2)}\n`);
  if (opts.markdown) fs.writeFileSync(`${outBase}.md`, md);
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), `${outBase}.json`)}${opts.markdown ? ` and ${path.relative(process.cwd(), `${outBase}.md`)}` : ''}; ${(results.seconds ?? 0).toFixed(0)} s in all\n`);
}
