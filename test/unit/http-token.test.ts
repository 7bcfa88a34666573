/**
 * WALBRIDGE_HTTP_TOKEN: with it set, every endpoint but /healthz (Railway's healthcheck) asks
 * for it, as a Bearer token or ?token= (the status page passes it on to status.json).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Metrics } from '../../src/health/metrics.js';
import { startHealthServer, type HealthServer } from '../../src/health/server.js';
import { createLogger } from '../../src/log.js';
import { LiveStatus } from '../../src/health/live-status.js';

const TOKEN = 'tok-3f9#/+é';
let server: HealthServer;

before(async () => {
  const metrics = new Metrics();
  server = await startHealthServer({ port: 0, host: '127.0.0.1', token: TOKEN, metrics, status: new LiveStatus(metrics), log: createLogger('silent') });
});

after(async () => {
  await server.close();
});

async function get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${server.port}${path}`, { headers });
  return { status: r.status, body: await r.text() };
}

test('/healthz answers without the token', async () => {
  assert.equal((await get('/healthz')).status, 200);
});

test('every other endpoint refuses a request without the token, or with a wrong one, and says how to pass it', async () => {
  for (const path of ['/', '/status.json', '/metrics', '/readyz']) {
    const none = await get(path);
    assert.equal(none.status, 401, path);
    assert.match(none.body, /WALBRIDGE_HTTP_TOKEN as a Bearer token or \?token=/);
    assert.ok(!none.body.includes(TOKEN));
    assert.equal((await get(path, { authorization: 'Bearer wrong' })).status, 401, path);
    assert.equal((await get(`${path}?token=${encodeURIComponent(`${TOKEN}x`)}`)).status, 401, path);
  }
});

test('the right token opens every endpoint, as a header or in the query string', async () => {
  for (const path of ['/', '/status.json', '/metrics']) {
    assert.equal((await get(path, { authorization: `Bearer ${TOKEN}` })).status, 200, path);
    assert.equal((await get(`${path}?token=${encodeURIComponent(TOKEN)}`)).status, 200, path);
  }
  // Not ready (no pipeline runs here), but past the token check.
  assert.equal((await get('/readyz', { authorization: `Bearer ${TOKEN}` })).status, 503);
});
