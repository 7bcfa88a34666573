/**
 * The status page as a person sees it, in a real browser (Debian's Chromium, headless, driven
 * by playwright-core): progress bars that move during the copy, then phase streaming with a
 * live lag and apply-rate chart. The screenshot it takes is the one in the README.
 */
import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startCluster, type Cluster } from '../harness/cluster.js';
import { createAppSchema, seedAppData, startWriteLoad, type WriteLoad } from '../harness/fixture.js';
import { waitFor } from '../harness/lsn.js';
import { startDaemon, type DaemonProcess } from '../helpers/daemon.js';

const CHROMIUM = process.env.WALBRIDGE_TEST_CHROMIUM ?? '/usr/bin/chromium';
const PASSWORD = 'page-Pw-93ff1c';

let source: Cluster;
let target: Cluster;
let daemon: DaemonProcess | null = null;
let browser: Browser | null = null;
let load: WriteLoad | null = null;

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: install Debian's (apt-get install chromium) or set WALBRIDGE_TEST_CHROMIUM`);
  [source, target] = await Promise.all([
    startCluster({ major: 15, name: 'source', password: PASSWORD }),
    startCluster({ major: 17, name: 'target', password: PASSWORD }),
  ]);
  await source.withClient(async (c) => {
    await createAppSchema(c);
    await seedAppData(c, { scale: 1 });
    await c.query(`
      INSERT INTO public.messages (user_id, role, content, created_at)
      SELECT (SELECT min(id) FROM public.users), 'user', repeat('history ' || g || ' ', 12), now() - g * interval '1 second'
        FROM generate_series(1, 700000) AS g`);
    await c.query('ANALYZE');
  });
  await target.withClient((c) => createAppSchema(c, { target: true }));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  daemon?.kill('SIGKILL');
  await load?.stop().catch(() => {});
  await Promise.all([source?.destroy(), target?.destroy()]);
});

test('the status page shows the copy moving, then streaming with a live chart, and no secret', { timeout: 180_000 }, async () => {
  load = startWriteLoad(source.url(), { ratePerSec: 40, seed: 31 });
  daemon = await startDaemon({ SOURCE_DATABASE_URL: source.url(), TARGET_DATABASE_URL: target.url(), WALBRIDGE_SCHEMAS: 'public,auth', WALBRIDGE_COPY_JOBS: '2' });
  await daemon.waitForLog((l) => String(l.msg).startsWith('http server listening'), 'the HTTP server');
  const page = await (browser as Browser).newPage({ viewport: { width: 1100, height: 900 } });
  await page.goto(`http://127.0.0.1:${daemon.port}/`);
  await page.waitForSelector('h1');
  assert.equal(await page.title(), 'walbridge');

  // During the copy: the big table's bar grows between two looks.
  const bar = page.locator('tr[data-table="public.messages"] .bar > span');
  const width = async () => Number(((await bar.getAttribute('style')) ?? '').replace(/[^\d.]/g, '') || 0);
  await waitFor(async () => (await page.locator('#phase').textContent()) === 'backfill' && (await bar.count()) === 1 && (await width()) > 0, {
    what: 'the copy of public.messages on the page',
    timeoutMs: 60_000,
    intervalMs: 100,
  });
  const first = await width();
  await waitFor(async () => (await width()) > first || (await page.locator('#phase').textContent()) !== 'backfill', {
    what: 'the progress bar to move',
    timeoutMs: 60_000,
    intervalMs: 100,
  });
  assert.ok((await width()) > first || (await page.locator('#phase').textContent()) !== 'backfill');

  // Then streaming: every table copied, lag shown, the apply-rate chart drawn.
  await waitFor(async () => (await page.locator('#phase').textContent()) === 'streaming', { what: 'phase streaming on the page', timeoutMs: 120_000, intervalMs: 200 });
  await waitFor(async () => ((await page.locator('#rateLine').getAttribute('points')) ?? '').split(' ').length >= 8 && (await page.locator('#rateNow').textContent()) !== '0 /s', {
    what: 'the apply-rate chart to show the app\'s writes',
    timeoutMs: 60_000,
    intervalMs: 200,
  });
  assert.match((await page.locator('#tables').textContent()) ?? '', /^16 \/ 16$/);
  assert.match((await page.locator('#lag').textContent()) ?? '', /B|–/);
  assert.match((await page.locator('#wal').textContent()) ?? '', /B/);
  // The README's picture is refreshed on purpose (WALBRIDGE_UPDATE_SCREENSHOT=1), not by every run.
  const shot = process.env.WALBRIDGE_UPDATE_SCREENSHOT ? 'docs/status-page.png' : path.join(os.tmpdir(), 'walbridge-status-page.png');
  await page.screenshot({ path: shot, fullPage: true });
  assert.ok(statSync(shot).size > 10_000, 'a screenshot was taken');

  const html = await page.content();
  assert.equal(html.includes(PASSWORD), false, 'no password on the page');
  assert.equal(html.includes(`:${source.port}`), false, 'no connection details on the page');
});
