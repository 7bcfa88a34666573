/**
 * Everything a run shows to the outside, captured and searched for secrets: the logs of every
 * daemon instance (stdout and stderr, so crash output too), every page and metrics text fetched
 * from them, every CLI output. Texts are searched as they are captured (page samples are not
 * kept), daemon output at check time.
 */
import type { CliResult, DaemonProcess } from './daemon.js';

export interface Secret {
  /** What it is, for the failure message (never the secret itself). */
  name: string;
  value: string;
}

export interface Leak {
  secret: string;
  where: string;
  /** The line around it with the secret masked, to find where it came from. */
  context: string;
}

/** The forms a password can take in a text: as is, and percent-encoded as in a URL. */
export function secretForms(name: string, password: string): Secret[] {
  const forms: Secret[] = [{ name, value: password }];
  const enc = encodeURIComponent(password);
  if (enc !== password) forms.push({ name: `${name} (URL-encoded)`, value: enc });
  return forms;
}

export class Exposure {
  private readonly secrets: Secret[] = [];
  private readonly daemons: Array<{ d: DaemonProcess; label: string }> = [];
  readonly leaks: Leak[] = [];
  /** Characters searched so far (pages, metrics, CLI; daemon output is added at check time). */
  bytesScanned = 0;
  samples = 0;

  addSecrets(...s: Secret[]): void {
    this.secrets.push(...s);
  }

  /** Search a text now; it is not kept. */
  scan(where: string, text: string): void {
    this.bytesScanned += text.length;
    this.samples++;
    for (const s of this.secrets) {
      let i = text.indexOf(s.value);
      while (i >= 0) {
        const from = Math.max(0, text.lastIndexOf('\n', i) + 1);
        const to = text.indexOf('\n', i);
        this.leaks.push({ secret: s.name, where, context: text.slice(from, to < 0 ? undefined : to).split(s.value).join('<SECRET>').slice(0, 300) });
        i = text.indexOf(s.value, i + s.value.length);
      }
    }
  }

  /** A daemon whose whole output is searched by check(). */
  watchDaemon(d: DaemonProcess, label: string): void {
    this.daemons.push({ d, label });
  }

  cli(label: string, r: CliResult): CliResult {
    this.scan(`cli ${label}`, r.out);
    return r;
  }

  /** Search every daemon's output; returns every leak found so far (empty: none). */
  check(): { leaks: Leak[]; bytes: number; daemons: number } {
    const leaks = [...this.leaks];
    let bytes = this.bytesScanned;
    for (const { d, label } of this.daemons) {
      const text = d.output.join('\n');
      bytes += text.length;
      for (const s of this.secrets) {
        if (text.includes(s.value)) {
          const line = d.output.find((l) => l.includes(s.value)) ?? '';
          leaks.push({ secret: s.name, where: `daemon ${label}`, context: line.split(s.value).join('<SECRET>').slice(0, 300) });
        }
      }
    }
    return { leaks, bytes, daemons: this.daemons.length };
  }
}

/** GET a path of a daemon's HTTP server; the body is scanned by `exposure` if given. */
export async function httpGet(port: number, path: string, exposure?: Exposure, label = ''): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(10_000) });
  const body = await r.text();
  exposure?.scan(`${label}${path}`, body);
  return { status: r.status, body };
}

/** One sample of a metric, e.g. metricValue(text, 'walbridge_phase', { phase: 'error' }). */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | null {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = (m[2] ?? '').split(',').filter(Boolean);
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return null;
}
