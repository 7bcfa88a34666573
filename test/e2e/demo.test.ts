/**
 * `npm run demo` as a newcomer runs it: a whole migration with a cutover at the end, and
 * Ctrl-C at any moment leaving no server, slot or temp directory behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import os from 'node:os';
import { test } from 'node:test';
import { waitFor } from '../harness/lsn.js';

/** The demo's server directories (its clusters are named demo-source and demo-target): another run's servers on the machine do not count. */
const tempDirs = () => new Set(readdirSync(os.tmpdir()).filter((d) => d.startsWith('walbridge-test-demo-')));

function demo(args: string[]) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, output: () => out, exited };
}

async function postgresPidsUnder(dirs: Set<string>): Promise<string[]> {
  const { execFileSync } = await import('node:child_process');
  const ps = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' });
  return ps.split('\n').filter((l) => /postgres/.test(l) && [...dirs].some((d) => l.includes(d)));
}

test('the demo migrates, cuts over on request, and prints the summary', { timeout: 240_000 }, async () => {
  const before = tempDirs();
  const d = demo(['--scale', '1', '--cutover-after', '3']);
  const code = await d.exited;
  const out = d.output();
  assert.equal(code, 0, out.slice(-3000));
  assert.match(out, /Status page: http:\/\/localhost:\d+\//);
  // At scale 1 the copy may end before the first progress tick; the Ctrl-C test below sees it running.
  assert.match(out, /copy done: 16\/16 tables, [1-9]\d* rows/);
  assert.match(out, /streaming: applied up to/);
  assert.match(out, /\$ walbridge cutover/);
  assert.match(out, /16 table\(s\) equal/);
  assert.match(out, /Cutover done at/);
  assert.match(out, /the daemon saw the cutover and stopped with status 0/);
  const left = [...tempDirs()].filter((x) => !before.has(x));
  assert.deepEqual(left, [], 'no temp directory left behind');
});

test('Ctrl-C during the copy leaves no server or temp directory behind', { timeout: 240_000 }, async () => {
  const before = tempDirs();
  const d = demo(['--scale', '3']);
  await waitFor(() => /copying \(/.test(d.output()), { what: 'the demo to be copying', timeoutMs: 180_000, intervalMs: 100 });
  const mine = new Set([...tempDirs()].filter((x) => !before.has(x)));
  assert.ok(mine.size >= 2, 'the demo made its servers');
  d.child.kill('SIGINT');
  await d.exited;
  assert.deepEqual([...tempDirs()].filter((x) => !before.has(x)), [], 'no temp directory left behind');
  assert.deepEqual(await postgresPidsUnder(mine), [], 'no server left running');
});
