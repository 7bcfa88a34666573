/**
 * The chaos run's results: one row per scenario (faults, SIGKILLs, rows compared, rows lost,
 * doubled or changed, seconds to recover after each fault), printed at the end of the run and,
 * for the long run, kept in docs/reliability.md with the date and the command.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const RELIABILITY_DOC = path.join(ROOT, 'docs', 'reliability.md');

export interface Fault {
  /** e.g. 'SIGKILL', 'source restart (immediate)', 'target unreachable 60 s'. */
  kind: string;
  /** walbridge's recorded phase when the fault hit (backfill = the copy, catchup = the spool's drain). */
  phase: string | null;
  /**
   * Seconds from the restart (or the end of the fault) until the target's position passed the
   * source's WAL position at that moment; null if not measured.
   */
  recoverySeconds: number | null;
}

export interface ScenarioResult {
  scenario: string;
  status: 'passed' | 'FAILED';
  faults: Fault[];
  rowsCompared: number | null;
  lost: number | null;
  doubled: number | null;
  changed: number | null;
  seconds: number;
  /**
   * "rows to change were not found" warnings on webhook_dedupe, the table the load truncates:
   * a TRUNCATE between the slot's consistent point and that table's copy (see world.ts).
   */
  truncateWarnings?: number;
  note?: string;
}

export const results: ScenarioResult[] = [];

const fmt = (n: number | null) => (n === null ? '–' : n.toLocaleString('en-US'));
const secs = (s: number | null) => (s === null ? '–' : s.toFixed(1));

function faultSummary(faults: Fault[]): string {
  const kills = faults.filter((f) => f.kind.startsWith('SIGKILL'));
  const parts: string[] = [];
  if (kills.length > 0) {
    const byPhase = new Map<string, number>();
    for (const k of kills) byPhase.set(k.phase ?? '?', (byPhase.get(k.phase ?? '?') ?? 0) + 1);
    parts.push(`${kills.length} SIGKILL (${[...byPhase].map(([p, n]) => `${n} ${p}`).join(', ')})`);
  }
  const others = new Map<string, number>();
  for (const f of faults.filter((x) => !x.kind.startsWith('SIGKILL'))) others.set(f.kind, (others.get(f.kind) ?? 0) + 1);
  for (const [k, n] of others) parts.push(n > 1 ? `${n}× ${k}` : k);
  return parts.join('; ') || '–';
}

export function killsOf(r: ScenarioResult): number {
  return r.faults.filter((f) => f.kind.startsWith('SIGKILL')).length;
}

/** The summary table (markdown, also readable in a terminal). */
export function summaryTable(rows: ScenarioResult[]): string {
  const lines = [
    '| scenario | result | faults | SIGKILLs | rows compared | rows lost | rows doubled | rows changed | seconds to recover, each fault |',
    '|---|---|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    const rec = r.faults.map((f) => secs(f.recoverySeconds)).join(', ') || '–';
    lines.push(
      `| ${r.scenario} | ${r.status} | ${faultSummary(r.faults)} | ${killsOf(r)} | ${fmt(r.rowsCompared)} | ${fmt(r.lost)} | ${fmt(r.doubled)} | ${fmt(r.changed)} | ${rec} |`,
    );
  }
  const kills = rows.reduce((a, r) => a + killsOf(r), 0);
  const faults = rows.reduce((a, r) => a + r.faults.length, 0);
  const compared = rows.reduce((a, r) => a + (r.rowsCompared ?? 0), 0);
  const lost = rows.reduce((a, r) => a + (r.lost ?? 0), 0);
  const doubled = rows.reduce((a, r) => a + (r.doubled ?? 0), 0);
  const changed = rows.reduce((a, r) => a + (r.changed ?? 0), 0);
  const all = rows.flatMap((r) => r.faults.map((f) => f.recoverySeconds)).filter((x): x is number => x !== null).sort((a, b) => a - b);
  const median = all.length > 0 ? (all[Math.floor(all.length / 2)] as number) : null;
  const max = all.length > 0 ? (all[all.length - 1] as number) : null;
  lines.push(`| **total** | ${rows.filter((r) => r.status === 'passed').length} of ${rows.length} passed | ${faults} faults | ${kills} | ${fmt(compared)} | ${fmt(lost)} | ${fmt(doubled)} | ${fmt(changed)} | median ${secs(median)}, max ${secs(max)} |`);
  return lines.join('\n');
}

/** Replace the part of docs/reliability.md between `<!-- name:begin -->` and `<!-- name:end -->`. */
export function writeDocSection(name: string, body: string): void {
  const begin = `<!-- ${name}:begin -->`;
  const end = `<!-- ${name}:end -->`;
  let doc = fs.existsSync(RELIABILITY_DOC) ? fs.readFileSync(RELIABILITY_DOC, 'utf8') : '# Reliability\n';
  const block = `${begin}\n${body.trim()}\n${end}`;
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i >= 0 && j > i) doc = doc.slice(0, i) + block + doc.slice(j + end.length);
  else doc = `${doc.trimEnd()}\n\n${block}\n`;
  fs.mkdirSync(path.dirname(RELIABILITY_DOC), { recursive: true });
  fs.writeFileSync(RELIABILITY_DOC, doc);
}

/** Whether this run keeps its results in docs/reliability.md: the long run, or when asked to. */
export function writesDocs(): boolean {
  return process.env.WALBRIDGE_CHAOS === 'long' || process.env.WALBRIDGE_CHAOS_DOCS === '1';
}

/** Escape a message for a markdown table cell. */
export function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>').trim();
}

/** One kill of test/chaos/cutover-kills.test.ts: where it landed, what it left, how the cutover ended. */
export interface CutoverKill {
  /** Where the kill came: the step `walbridge cutover` had just printed ('4/7'), or '7/7, after its record'. */
  at: string;
  /** Which process was killed. */
  killed: 'the cutover command' | 'the daemon' | 'both';
  /** What the kill left on the source and the target, as read right after it. */
  left: string;
  /** What `walbridge status` said about it right then. */
  status: string;
  /** How it ended. */
  outcome: string;
  /** How long writes were refused, as the cutover recorded it (from the fence it went on from to the record). */
  writesRefusedSeconds: number | null;
  /** From the kill until the cutover was done. */
  secondsToDone: number;
}

export const cutoverKills: CutoverKill[] = [];

/** The kills as a markdown table. */
export function cutoverKillTable(kills: CutoverKill[]): string {
  return [
    '| # | killed at | killed | what it left | `walbridge status` said | outcome | writes refused (s) | kill to done (s) |',
    '|---:|---|---|---|---|---|---:|---:|',
    ...kills.map(
      (k, i) =>
        `| ${i + 1} | ${k.at} | ${k.killed} | ${cell(k.left)} | ${cell(k.status)} | ${cell(k.outcome)} | ${secs(k.writesRefusedSeconds)} | ${secs(k.secondsToDone)} |`,
    ),
  ].join('\n');
}
