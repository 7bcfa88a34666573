/**
 * Child processes (pg_dump, psql, pgbench, pgcopydb) and cleanup for the benchmark.
 *
 * Everything the benchmark starts or creates outside the clusters (child processes, temp dirs,
 * network namespaces) is registered here and removed synchronously on exit, Ctrl-C included.
 * Clusters clean themselves up (test/harness/cluster.ts installs its own exit hook), and so do
 * daemons started with test/helpers/daemon.ts.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const children = new Set<ChildProcess>();
/** Children that lead a process group of their own: killing one alone would orphan what it started (npm's scripts). */
const groupLeaders = new WeakSet<ChildProcess>();
const syncCleanups: Array<() => void> = [];
let hooked = false;

function runSyncCleanups(): void {
  for (const c of children) {
    try {
      if (groupLeaders.has(c) && c.pid !== undefined) process.kill(-c.pid, 'SIGKILL');
      else c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
  children.clear();
  while (syncCleanups.length > 0) {
    const f = syncCleanups.pop();
    try {
      f?.();
    } catch {
      // best effort: keep going
    }
  }
}

export function installCleanup(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', runSyncCleanups);
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(sig, () => {
      process.stderr.write(`\n${sig}: cleaning up (clusters, daemons, namespaces, temp dirs)…\n`);
      process.exit(code);
    });
  }
}

/** Run f on exit (also on Ctrl-C). Returns an unregister function that runs f now. */
export function onExit(f: () => void): () => void {
  installCleanup();
  syncCleanups.push(f);
  return () => {
    const i = syncCleanups.indexOf(f);
    if (i >= 0) syncCleanups.splice(i, 1);
    f();
  };
}

/** A temp directory removed on exit. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `walbridge-bench-${prefix}-`));
  onExit(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Environment for PostgreSQL client tools: no PG* variables from the caller's shell. */
export function toolEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('PG')) env[k] = v;
  env.LC_ALL = 'C.UTF-8';
  return { ...env, ...extra };
}

export interface ProcResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** A tool that starts others (npm): run it in a process group of its own, all of it killed on exit. */
  group?: boolean;
}

/** Spawn a tracked child (killed on exit). */
export function spawnTracked(file: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  installCleanup();
  const child = spawn(file, args, { env: opts.env ?? toolEnv(), cwd: opts.cwd ?? '/', stdio: ['pipe', 'pipe', 'pipe'], detached: opts.group === true });
  children.add(child);
  if (opts.group) groupLeaders.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Collect a child's output (the last `keep` bytes of each stream) and wait for its exit. */
export function collect(child: ChildProcess, startedAt = Date.now(), keep = 1 << 20): Promise<ProcResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (b: Buffer) => {
    stdout += b.toString('utf8');
    if (stdout.length > keep) stdout = stdout.slice(-keep);
  });
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString('utf8');
    if (stderr.length > keep) stderr = stderr.slice(-keep);
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr, seconds: (Date.now() - startedAt) / 1000 }));
  });
}

export async function runTool(file: string, args: string[], opts: SpawnOptions & { input?: string } = {}): Promise<ProcResult> {
  const t0 = Date.now();
  const child = spawnTracked(file, args, opts);
  const done = collect(child, t0);
  child.stdin?.end(opts.input ?? '');
  return done;
}

/** Synchronous command for setup/teardown (ip, tc); returns stdout, throws with stderr. */
export function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function lastLines(text: string, n = 8): string {
  return text.trim().split('\n').slice(-n).join('\n');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
