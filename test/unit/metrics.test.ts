/**
 * /metrics before anything went wrong: walbridge_errors_total already has a series at 0 for
 * every kind, so a dashboard's rate() shows 0 instead of no data.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_KINDS } from '../../src/errors.js';
import { Metrics } from '../../src/health/metrics.js';

// Apply counts 'divergence' besides the kinds of the errors it throws.
const COUNTED_KINDS = [...ERROR_KINDS, 'divergence'];

test('a fresh scrape shows walbridge_errors_total at 0 for every kind', async () => {
  const text = await new Metrics().registry.metrics();
  for (const kind of COUNTED_KINDS) {
    assert.ok(text.includes(`walbridge_errors_total{kind="${kind}"} 0\n`), `no walbridge_errors_total{kind="${kind}"} 0 in:\n${text}`);
  }
});

test('a counted error moves its own kind only', async () => {
  const metrics = new Metrics({ defaultMetrics: false });
  metrics.errors.inc({ kind: 'slot' });
  const text = await metrics.registry.metrics();
  assert.ok(text.includes('walbridge_errors_total{kind="slot"} 1\n'), text);
  assert.ok(text.includes('walbridge_errors_total{kind="connection"} 0\n'), text);
});
