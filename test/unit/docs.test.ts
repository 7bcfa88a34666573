/**
 * The docs only show commands walbridge has: every line of a fenced code block in README.md and
 * docs/*.md that runs walbridge (`walbridge …`, `npx walbridge …`, `node dist/cli.js …`,
 * `node /app/dist/cli.js …`, optionally after `$ `, environment assignments or `railway ssh --`)
 * names a real subcommand, and every `--flag` on it appears in that subcommand's `--help`.
 * Local links between the documents must point at files and headings that exist.
 *
 * Runs the built CLI (`npm test` builds before it runs the tests).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'dist', 'cli.js');

const DOCS = ['README.md', ...readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

interface DocCommand {
  file: string;
  line: number;
  text: string;
  /** The subcommand, or null for `walbridge --help` and the like. */
  subcommand: string | null;
  /** The word after it (a nested command, such as "add" of "tables add", or an argument). */
  next: string | null;
  flags: string[];
}

/** A shell line that runs walbridge; what follows the program name is captured. */
const INVOCATION = /^(?:railway ssh -- )?(?:npx )?(?:walbridge|node (?:\/app\/)?dist\/cli\.js)(?:\s+(.*))?$/;
const ENV_ASSIGNMENT = /^[A-Z_][A-Z0-9_]*=(?:"[^"]*"|'[^']*'|\S*)\s+/;

/** The walbridge command lines in the fenced code blocks of a markdown text. */
function commandLines(file: string, markdown: string): DocCommand[] {
  const out: DocCommand[] = [];
  const lines = markdown.split('\n');
  let fence: string | null = null;
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i] ?? '';
    const marker = /^\s*(`{3,}|~{3,})/.exec(raw)?.[1];
    if (marker !== undefined) {
      if (fence === null) fence = marker;
      else if (marker.startsWith(fence)) fence = null;
      continue;
    }
    if (fence === null) continue;
    const lineNo = i + 1;
    // A shell command continued with a trailing backslash is one command.
    let text = raw;
    while (text.endsWith('\\') && i + 1 < lines.length) text = `${text.slice(0, -1)} ${lines[++i] ?? ''}`;
    let cmd = text.trim().replace(/^\$\s+/, '');
    for (let m = ENV_ASSIGNMENT.exec(cmd); m; m = ENV_ASSIGNMENT.exec(cmd)) cmd = cmd.slice(m[0].length);
    const inv = INVOCATION.exec(cmd);
    if (!inv) continue;
    // Only this command: not what a pipe, a list or a comment adds.
    const args = (inv[1] ?? '').split(/\s(?:\||\|\||&&|;|#)\s|;|\s>\s/)[0]?.trim() ?? '';
    const first = args.split(/\s+/)[0] ?? '';
    // "walbridge verify: host → host" is a line of output, "<command>" a placeholder.
    if (first.endsWith(':') || first.startsWith('<')) continue;
    out.push({
      file,
      line: lineNo,
      text: cmd,
      subcommand: first === '' || first.startsWith('-') ? null : first,
      next: args.split(/\s+/)[1] ?? null,
      flags: [...args.matchAll(/(?<![\w-])(--[a-z0-9][a-z0-9-]*)/g)].map((m) => m[1] as string),
    });
  }
  return out;
}

function help(args: string[]): string {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run "npm run build" first`);
  return execFileSync(process.execPath, [CLI, ...args, '--help'], { cwd: ROOT, encoding: 'utf8', env: { PATH: process.env.PATH ?? '' } });
}

/** The long flags a --help text lists in its Options section. */
function flagsOf(helpText: string): Set<string> {
  const options = helpText.split(/^Options:$/m)[1]?.split(/^\S/m)[0] ?? '';
  return new Set([...options.matchAll(/(?<![\w-])(--[a-z0-9][a-z0-9-]*)/g)].map((m) => m[1] as string));
}

/** Subcommands listed by `walbridge --help`, each with the flags of its own --help. */
function cliFlags(): Map<string | null, Set<string>> {
  const top = help([]);
  const commands = (top.split(/^Commands:$/m)[1] ?? '')
    .split('\n')
    .flatMap((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1] ?? [])
    .filter((c) => c !== 'help');
  const map = new Map<string | null, Set<string>>([[null, flagsOf(top)]]);
  for (const c of commands) {
    const text = help([c]);
    map.set(c, flagsOf(text));
    // Nested commands ("tables add") have their own --help.
    for (const n of nestedCommands(text)) map.set(`${c} ${n}`, flagsOf(help([c, n])));
  }
  return map;
}

function nestedCommands(helpText: string): string[] {
  return (helpText.split(/^Commands:$/m)[1]?.split(/^\S/m)[0] ?? '')
    .split('\n')
    .flatMap((l) => /^ {2}([a-z][a-z-]*)\b/.exec(l)?.[1] ?? [])
    .filter((c) => c !== 'help');
}

function problemsOf(commands: DocCommand[], known: Map<string | null, Set<string>>): string[] {
  const problems: string[] = [];
  for (const c of commands) {
    const nested = c.next === null ? undefined : known.get(`${c.subcommand} ${c.next}`);
    const name = nested ? `${c.subcommand} ${c.next}` : c.subcommand;
    const flags = nested ?? known.get(c.subcommand);
    if (!flags) {
      problems.push(`${c.file}:${c.line}: "${c.text}": walbridge has no command "${c.subcommand}"`);
      continue;
    }
    for (const f of c.flags) {
      if (!flags.has(f)) problems.push(`${c.file}:${c.line}: "${c.text}": ${f} is not in "walbridge ${name ?? ''} --help"`);
    }
  }
  return problems;
}

test('the scanner finds command lines, skips output and placeholders, and catches a wrong flag', () => {
  const md = [
    'Run `walbridge nonsense` (inline code is not scanned).',
    '```',
    '$ walbridge verify --table public.users --json | jq .equal',
    'walbridge verify: 127.0.0.1:5432/app → 127.0.0.1:5433/app',
    'SOURCE_DATABASE_URL="$TARGET_DATABASE_URL" WALBRIDGE_SLOT=x walbridge status',
    'railway ssh -- node /app/dist/cli.js teardown --target',
    'node dist/cli.js cutover \\',
    '  --keep-source-slot',
    'walbridge <command> --help',
    '     a walbridge daemon is probably running',
    'walbridge verify --tabel x',
    'walbridge frobnicate',
    'walbridge tables add public.x --wait',
    'walbridge tables remove public.x --wait',
    '```',
  ].join('\n');
  const found = commandLines('t.md', md);
  assert.deepEqual(
    found.map((c) => [c.subcommand, c.flags]),
    [
      ['verify', ['--table', '--json']],
      ['status', []],
      ['teardown', ['--target']],
      ['cutover', ['--keep-source-slot']],
      ['verify', ['--tabel']],
      ['frobnicate', []],
      ['tables', ['--wait']],
      ['tables', ['--wait']],
    ],
  );
  const known = new Map<string | null, Set<string>>([
    ['verify', new Set(['--table', '--json'])],
    ['status', new Set(['--json'])],
    ['teardown', new Set(['--target'])],
    ['cutover', new Set(['--keep-source-slot'])],
    ['tables', new Set(['--json'])],
    ['tables add', new Set(['--wait'])],
    ['tables remove', new Set<string>()],
  ]);
  const problems = problemsOf(found, known);
  assert.equal(problems.length, 3);
  assert.match(problems[0] ?? '', /--tabel is not in "walbridge verify --help"/);
  assert.match(problems[1] ?? '', /no command "frobnicate"/);
  assert.match(problems[2] ?? '', /--wait is not in "walbridge tables remove --help"/);
});

test('every walbridge command in README.md and docs/*.md exists, with flags its --help lists', () => {
  const commands = DOCS.flatMap((f) => commandLines(f, readFileSync(path.join(ROOT, f), 'utf8')));
  const known = cliFlags();
  for (const c of ['run', 'preflight', 'status', 'verify', 'cutover', 'teardown']) assert.ok(known.has(c), `"walbridge --help" lists ${c}`);
  assert.ok(commands.length >= 10, `the docs show walbridge commands (found ${commands.length})`);
  const problems = problemsOf(commands, known);
  assert.deepEqual(problems, [], `commands in the docs that walbridge does not have:\n${problems.join('\n')}`);
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
function anchorOf(heading: string): string {
  return heading
    .replace(/`/g, '')
    .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{M}\p{N}_ -]/gu, '')
    .replace(/ /g, '-');
}

function anchorsIn(markdown: string): Set<string> {
  const out = new Set<string>();
  let inFence = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^#{1,6}\s+(.+?)\s*#*$/.exec(line);
    if (h?.[1]) out.add(anchorOf(h[1]));
  }
  return out;
}

test('links between README.md and the docs point at files and headings that exist', () => {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  for (const f of DOCS.filter((d) => d.startsWith('docs/'))) assert.ok(readme.includes(`](${f})`), `README.md links ${f}`);
  const problems: string[] = [];
  for (const file of DOCS) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const link = m[1] as string;
      if (/^[a-z]+:/i.test(link)) continue; // http(s), mailto
      const [target = '', anchor] = link.split('#');
      const resolved = target === '' ? path.join(ROOT, file) : path.resolve(path.dirname(path.join(ROOT, file)), target);
      if (!existsSync(resolved)) {
        problems.push(`${file}: ${link}: no such file`);
        continue;
      }
      if (anchor && resolved.endsWith('.md') && !anchorsIn(readFileSync(resolved, 'utf8')).has(anchor)) {
        problems.push(`${file}: ${link}: no heading with that anchor`);
      }
    }
  }
  assert.deepEqual(problems, []);
});
