/**
 * `--baseline REV`: another build of walbridge (any git revision) measured in the same run as this
 * checkout's, so that a refactor is compared with the commit before on the same data, the same
 * machine and the same minutes, not with a run of another day.
 *
 * REV is checked out in a temporary git worktree (removed at the end and on Ctrl-C), given this
 * checkout's node_modules (or its own `npm ci` when its package-lock.json differs) and built with
 * its own `npm run build`. Its daemon gets a target database, a slot and a publication of its own,
 * so it never meets the current build's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { lastLines, onExit, runTool, toolEnv } from './proc.js';
import { walbridgeEnv } from './walbridge.js';

export interface BaselineBuild {
  /** As given on the command line (HEAD~5, a hash, a branch). */
  rev: string;
  commit: string;
  /** The commit's subject line. */
  subject: string;
  /** Its built daemon, <worktree>/dist/daemon.js. */
  script: string;
  /** Remove the worktree now (otherwise on exit); idempotent. */
  remove(): void;
}

/** A built baseline with where it copies and streams; `name` labels its lines and rows. */
export interface Baseline extends BaselineBuild {
  name: string;
  db: string;
  slot: string;
  publication: string;
  env: Record<string, string>;
}

const BASELINE_DB = 'wb_baseline';
const BASELINE_SLOT = 'walbridge_baseline';

function git(root: string, args: string[]): string {
  return execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
}

/** Check out and build REV; throws before anything is measured if it cannot. */
export async function buildBaseline(root: string, rev: string, say: (s: string) => void): Promise<BaselineBuild> {
  let commit: string;
  try {
    commit = git(root, ['rev-parse', '--verify', '--end-of-options', `${rev}^{commit}`]);
  } catch (err) {
    throw new Error(`--baseline ${rev}: not a commit of this repository`, { cause: err });
  }
  const subject = git(root, ['log', '-1', '--format=%s', commit]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'walbridge-bench-baseline-'));
  const modules = path.join(dir, 'node_modules');
  let removed = false;
  const remove = onExit(() => {
    if (removed) return;
    removed = true;
    // The link first: whatever removes the folder after must not reach this checkout's node_modules.
    if (fs.lstatSync(modules, { throwIfNoEntry: false })?.isSymbolicLink()) fs.unlinkSync(modules);
    try {
      git(root, ['worktree', 'remove', '--force', dir]);
    } catch {
      // not registered (add failed): the folder alone
    }
    fs.rmSync(dir, { recursive: true, force: true });
    git(root, ['worktree', 'prune']);
  });
  say(`baseline: ${rev} = ${commit.slice(0, 7)} "${subject}", building it in ${dir} …`);
  git(root, ['worktree', 'add', '--detach', dir, commit]);
  const lock = (d: string) => fs.readFileSync(path.join(d, 'package-lock.json'), 'utf8');
  if (lock(dir) === lock(root)) {
    fs.symlinkSync(path.join(root, 'node_modules'), modules, 'dir');
  } else {
    say('  its package-lock.json differs from this checkout\'s: npm ci there …');
    await npm(dir, ['ci', '--no-audit', '--no-fund'], rev);
  }
  await npm(dir, ['run', 'build'], rev);
  const script = path.join(dir, 'dist', 'daemon.js');
  if (!fs.existsSync(script)) throw new Error(`--baseline ${rev}: its build made no dist/daemon.js`);
  return { rev, commit, subject, script, remove };
}

async function npm(cwd: string, args: string[], rev: string): Promise<void> {
  const r = await runTool('npm', args, { cwd, env: toolEnv(), group: true });
  if (r.code !== 0) throw new Error(`--baseline ${rev}: npm ${args.join(' ')} failed (exit ${r.code}):\n${lastLines(r.stdout + r.stderr, 12)}`);
}

/** How the baseline is named in the lines said and the table's rows. */
export function baselineName(commit: string): string {
  return `baseline ${commit.slice(0, 7)}`;
}

/** Where the baseline copies to: the same source and settings as the current build, its own database, slot and publication. */
export function baselineTarget(build: BaselineBuild, sourceUrl: string, targetUrl: (db: string) => string, settings: Record<string, string>): Baseline {
  const names = { WALBRIDGE_SLOT: BASELINE_SLOT, WALBRIDGE_PUBLICATION: BASELINE_SLOT };
  return {
    ...build,
    name: baselineName(build.commit),
    db: BASELINE_DB,
    slot: BASELINE_SLOT,
    publication: BASELINE_SLOT,
    env: walbridgeEnv(sourceUrl, targetUrl(BASELINE_DB), { ...settings, ...names }),
  };
}
