/**
 * CPU time spent by groups of processes during a measurement (user + system, from
 * /proc/<pid>/stat): where the work of a drain goes, per process, whatever the wall clock says
 * on a machine where everything shares two cores. Processes are found by a callback every
 * `everyMs` (servers start backends as consumers connect); a process that exits keeps the time
 * last read for it.
 */
import fs from 'node:fs';
import { sleep } from './proc.js';

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on Linux everywhere in practice). */
const TICKS_PER_SECOND = 100;

/** The fields of /proc/<pid>/stat after the command name (which may hold spaces) in its parentheses: [0] is field 3 (state); null if the process is gone. */
function statFields(pid: number): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** User + system CPU seconds of one process so far; null if it is gone. */
export function cpuSeconds(pid: number): number | null {
  const f = statFields(pid);
  return f ? (Number(f[11]) + Number(f[12])) / TICKS_PER_SECOND : null;
}

/** The parent of a process (field 4 of its stat); null if it is gone. */
export function parentPid(pid: number): number | null {
  const f = statFields(pid);
  return f ? Number(f[1]) : null;
}

/**
 * CPU seconds a whole PostgreSQL server has used so far (user + system): its postmaster, every
 * process it runs now (backends, walsenders, checkpointer, walwriter, autovacuum, parallel
 * workers), and every one it ran that has exited (the postmaster's cutime and cstime: the time of
 * the children it waited for). The difference of two readings is everything the server did in
 * between, short-lived backends included, which sampling live pids would miss.
 */
export function serverCpuSeconds(postmaster: number): number {
  const own = statFields(postmaster);
  if (!own) throw new Error(`postmaster ${postmaster} is gone`);
  let ticks = Number(own[11]) + Number(own[12]) + Number(own[13]) + Number(own[14]);
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f && Number(f[1]) === postmaster) ticks += Number(f[11]) + Number(f[12]);
  }
  return ticks / TICKS_PER_SECOND;
}

export type PidSource = () => Promise<number[]> | number[];

export class CpuSampler {
  /** Per group, per pid: CPU seconds when first seen, and last read. */
  private readonly seen = new Map<string, Map<number, { first: number; last: number }>>();
  private running = true;
  private readonly loop: Promise<void>;

  /**
   * @param groups pids to follow, per group name
   * @param fromZero groups whose processes start during the measurement: their whole CPU time
   *   counts (a daemon started for it), not only what they use after first being seen
   */
  constructor(
    private readonly groups: Record<string, PidSource>,
    private readonly fromZero: ReadonlySet<string> = new Set(),
    everyMs = 200,
  ) {
    this.loop = (async () => {
      while (this.running) {
        await this.sample();
        await sleep(everyMs);
      }
    })();
  }

  private async sample(): Promise<void> {
    for (const [name, source] of Object.entries(this.groups)) {
      let pids: number[] = [];
      try {
        pids = await source();
      } catch {
        // a missed sample
      }
      const m = this.seen.get(name) ?? new Map<number, { first: number; last: number }>();
      this.seen.set(name, m);
      for (const pid of new Set([...pids, ...m.keys()])) {
        const s = cpuSeconds(pid);
        if (s === null) continue;
        const e = m.get(pid);
        if (e) e.last = s;
        else m.set(pid, { first: this.fromZero.has(name) ? 0 : s, last: s });
      }
    }
  }

  /** Stop sampling; CPU seconds per group. */
  async stop(): Promise<Record<string, number>> {
    await this.sample();
    this.running = false;
    await this.loop;
    const out: Record<string, number> = {};
    for (const [name, m] of this.seen) out[name] = [...m.values()].reduce((a, e) => a + (e.last - e.first), 0);
    return out;
  }
}

/** CPU seconds every core of the machine has been busy since boot (user, nice, system, irq, softirq; /proc/stat). */
export function machineCpuSeconds(): number {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return ((f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0)) / TICKS_PER_SECOND;
}
