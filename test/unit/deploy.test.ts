/**
 * The Grafana dashboard and the Prometheus alerts only name metrics walbridge really exports,
 * so a renamed metric cannot silently blank a panel or mute an alert.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { Metrics } from '../../src/health/metrics.js';
import { PHASES } from '../../src/status/phase.js';
import { START_NODE_ARGS } from '../helpers/daemon.js';

const exported = async () => new Set((await new Metrics().registry.getMetricsAsJSON()).map((m) => m.name));
const referenced = (text: string) => new Set([...text.matchAll(/\b(walbridge_[a-z_]+|process_[a-z_]+)\b/g)].map((m) => m[1] as string));

test('the dashboard parses and every metric it queries is exported', async () => {
  const text = readFileSync('deploy/grafana-dashboard.json', 'utf8');
  const dash = JSON.parse(text) as { panels: { targets: { expr: string }[] }[] };
  assert.ok(dash.panels.length >= 8);
  const names = await exported();
  const used = referenced(dash.panels.flatMap((p) => p.targets.map((t) => t.expr)).join('\n'));
  assert.ok(used.has('walbridge_source_retained_wal_bytes') && used.has('walbridge_replication_lag_seconds'));
  for (const n of used) assert.ok(names.has(n), `dashboard queries ${n}, which is not exported`);
});

test('every alert names exported metrics and phases that exist', async () => {
  const text = readFileSync('deploy/prometheus-alerts.yml', 'utf8');
  const names = await exported();
  for (const n of referenced(text)) assert.ok(names.has(n), `alert uses ${n}, which is not exported`);
  for (const m of text.matchAll(/phase="([a-z]+)"/g)) assert.ok((PHASES as readonly string[]).includes(m[1] as string), `unknown phase ${m[1]}`);
  for (const alert of ['WalbridgeError', 'WalbridgeRetainedWalNearLimit', 'WalbridgeSlotInactive', 'WalbridgeLagHigh']) {
    assert.match(text, new RegExp(`alert: ${alert}\\b`));
  }
});

test('the Dockerfile and railway.toml run the daemon with the same node flags as npm start', () => {
  const cmd = /^CMD (\[.*\])$/m.exec(readFileSync('Dockerfile', 'utf8'))?.[1];
  assert.ok(cmd, 'the Dockerfile has an exec-form CMD');
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  assert.deepEqual(JSON.parse(cmd) as string[], pkg.scripts.start.split(/\s+/));
  assert.ok(START_NODE_ARGS.some((a) => a.startsWith('--max-old-space-size=')), 'the heap is capped');
  const railway = /^startCommand = "(.*)"$/m.exec(readFileSync('railway.toml', 'utf8'))?.[1];
  assert.equal(railway, pkg.scripts.start, "railway.toml's start command (which overrides the Dockerfile's)");
});

test('the image, package.json and the tests run one Node.js major, a current LTS', () => {
  const from = [...readFileSync('Dockerfile', 'utf8').matchAll(/^FROM node:(\d+)/gm)].map((m) => Number(m[1]));
  const engines = /^>=(\d+)$/.exec((JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } }).engines.node)?.[1];
  const script = /^NODE_MAJOR=(\d+)$/m.exec(readFileSync('scripts/node-lts.sh', 'utf8'))?.[1];
  assert.equal(from.length, 2, 'both stages of the Dockerfile start from the official node image');
  assert.ok(from.every((m) => m === Number(engines) && m === Number(script)), `Dockerfile ${from.join(', ')}, engines ${engines}, node-lts.sh ${script}`);
  // Even majors are the LTS lines; this very test runs on it (CI installs it with node-lts.sh).
  assert.equal(Number(script) % 2, 0, 'an LTS (even) major');
  assert.equal(process.versions.node.split('.')[0], script, 'the tests run on the major the image ships (PATH="$(scripts/node-lts.sh):$PATH")');
});
