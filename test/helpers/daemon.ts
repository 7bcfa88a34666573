/**
 * Runs the built daemon (`node dist/daemon.js` with npm start's flags, exactly what Railway runs) as a child
 * process, keeps every line it prints, and lets a test wait for a log line, kill it with
 * any signal, and read its exit.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../harness/lsn.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const DAEMON = path.join(ROOT, 'dist', 'daemon.js');
export const CLI = path.join(ROOT, 'dist', 'cli.js');
/** The node flags `npm start` runs the daemon with (and the Dockerfile, checked by test/unit/deploy). */
export const START_NODE_ARGS: string[] = (() => {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: { start: string } };
  const words = pkg.scripts.start.split(/\s+/);
  return words.slice(1, words.indexOf('dist/daemon.js'));
})();

export interface LogLine {
  level?: string;
  msg?: string;
  [k: string]: unknown;
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  readonly port: number;
  /** Every line printed on stdout and stderr, in order. */
  readonly output: string[];
  /** stdout lines that parsed as JSON log records. */
  logs(): LogLine[];
  waitForLog(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
  /** SIGTERM, then wait for the exit. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of running) c.kill('SIGKILL');
});

export async function startDaemon(
  env: Record<string, string>,
  /** `prefix`: a command that runs node, e.g. ['ip', 'netns', 'exec', 'ns1'] (it must exec, keeping the pid). */
  opts: { script?: string; args?: string[]; nodeArgs?: string[]; cwd?: string; prefix?: string[] } = {},
): Promise<DaemonProcess> {
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const argv = [process.execPath, ...START_NODE_ARGS, ...(opts.nodeArgs ?? []), opts.script ?? DAEMON, ...(opts.args ?? [])];
  const [command, ...args] = [...(opts.prefix ?? []), ...argv] as [string, ...string[]];
  const child = spawn(command, args, {
    cwd: opts.cwd,
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env, PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  const output: string[] = [];
  const parsed: LogLine[] = [];
  const onData = (stream: 'out' | 'err') => {
    let rest = '';
    return (chunk: Buffer) => {
      rest += chunk.toString('utf8');
      const lines = rest.split('\n');
      rest = lines.pop() ?? '';
      for (const line of lines) {
        output.push(line);
        if (process.env.WALBRIDGE_TEST_ECHO) process.stderr.write(`[daemon ${stream}] ${line}\n`);
        if (stream === 'out' && line.startsWith('{')) {
          try {
            parsed.push(JSON.parse(line) as LogLine);
          } catch {
            // not a log record
          }
        }
      }
    };
  };
  child.stdout?.on('data', onData('out'));
  child.stderr?.on('data', onData('err'));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      running.delete(child);
      resolve({ code, signal });
    });
  });
  const d: DaemonProcess = {
    child,
    port,
    output,
    logs: () => parsed,
    async waitForLog(pred, what, timeoutMs = 60_000) {
      let found: LogLine | undefined;
      let gone = false;
      void exited.then(() => {
        gone = true;
      });
      await waitFor(
        () => {
          found = parsed.find(pred);
          if (!found && gone) throw new Error(`daemon exited before ${what}; last output:\n${output.slice(-15).join('\n')}`);
          return found !== undefined;
        },
        { timeoutMs, what, intervalMs: 25 },
      );
      return found as LogLine;
    },
    exited,
    kill: (signal) => {
      child.kill(signal);
    },
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
  };
  return d;
}

/** Every error-level line, for assertion messages. */
export function errorsOf(d: DaemonProcess): string {
  return d
    .logs()
    .filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'warn')
    .map((l) => `${l.level}: ${l.msg ?? ''} ${JSON.stringify(l.err ?? '')}`)
    .join('\n');
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** stdout and stderr together. */
  out: string;
}

/** Run `walbridge <args>` (the built CLI) with the given environment, to its exit. */
export function runCli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr, out: stdout + stderr }));
  });
}
