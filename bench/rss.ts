/**
 * Resident memory of a process, sampled from /proc/<pid>/status (VmRSS; VmHWM is the kernel's own
 * high-water mark for the whole life of the process).
 */
import fs from 'node:fs';

export interface RssSample {
  t: number;
  rssKb: number;
}

export class RssSampler {
  readonly samples: RssSample[] = [];
  /** VmHWM at the last successful read (kB): peak RSS since the process started. */
  hwmKb = 0;
  private timer: NodeJS.Timeout;

  constructor(
    readonly pid: number,
    intervalMs = 200,
  ) {
    this.read();
    this.timer = setInterval(() => this.read(), intervalMs);
    this.timer.unref();
  }

  private read(): void {
    let text: string;
    try {
      text = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    } catch {
      return; // exited
    }
    const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(text);
    if (rss) this.samples.push({ t: Date.now(), rssKb: Number(rss[1]) });
    if (hwm) this.hwmKb = Number(hwm[1]);
  }

  /** Highest sampled RSS in [from, to] (ms timestamps), in MB. */
  peakMb(from = 0, to = Number.POSITIVE_INFINITY): number {
    let max = 0;
    for (const s of this.samples) if (s.t >= from && s.t <= to && s.rssKb > max) max = s.rssKb;
    return max / 1024;
  }

  stop(): void {
    this.read();
    clearInterval(this.timer);
  }
}
