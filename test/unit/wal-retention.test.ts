/**
 * preflight's wal-retention check, without a database: how long a slot nobody reads survives,
 * in words a person reads, and the limit stated as the source reported it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { slotSurvival, walRetentionResult } from '../../src/preflight/source-checks.js';

const MB = 1024 * 1024;

describe('slotSurvival', () => {
  test('nothing written: the slot is not at risk at this rate', () => {
    assert.equal(slotSurvival(Infinity), 'indefinitely at the current rate');
  });

  test('under a minute, minutes, hours', () => {
    assert.equal(slotSurvival(0), 'less than a minute');
    assert.equal(slotSurvival(0.4), 'less than a minute');
    assert.equal(slotSurvival(1.2), 'about 1 minute');
    assert.equal(slotSurvival(14.6), 'about 15 minutes');
    assert.equal(slotSurvival(89), 'about 89 minutes');
    assert.equal(slotSurvival(145), 'about 2 hours');
    assert.equal(slotSurvival(20 * 60 + 10), 'about 20 hours');
  });

  test('beyond a day the one-second sample promises no number', () => {
    assert.equal(slotSurvival(24 * 60), 'more than a day at the current rate');
    assert.equal(slotSurvival(2556528), 'more than a day at the current rate');
  });
});

describe('walRetentionResult', () => {
  test('states max_slot_wal_keep_size as read, whatever the image sets it to', () => {
    for (const keepMb of [512, 4096]) {
      const r = walRetentionResult(keepMb, 0);
      assert.equal(r.status, 'pass');
      assert.match(r.message, new RegExp(`^max_slot_wal_keep_size = ${keepMb} MB and the source writes 0\\.0 MB of WAL per minute: `));
      assert.match(r.message, /the slot survives indefinitely at the current rate before the source invalidates it/);
    }
  });

  test('a quiet source: hours or more, not millions of minutes', () => {
    // 512 MB at 0.2 KB/s: about 2.5 million minutes
    const r = walRetentionResult(512, 205);
    assert.equal(r.status, 'pass');
    assert.match(r.message, /survives more than a day at the current rate/);
    assert.equal(r.fix, undefined);
  });

  test('under 15 minutes is a warning with a fix', () => {
    const r = walRetentionResult(512, (512 * MB) / (10 * 60));
    assert.equal(r.status, 'warn');
    assert.match(r.message, /writes 51 MB of WAL per minute: if walbridge stops, the slot survives about 10 minutes/);
    assert.match(r.fix ?? '', /Keep walbridge running/);
  });

  test('unlimited (-1) is a warning about the disk', () => {
    const r = walRetentionResult(-1, MB / 60);
    assert.equal(r.status, 'warn');
    assert.match(r.message, /^max_slot_wal_keep_size is unlimited: the source writes 1\.0 MB of WAL per minute/);
  });

  test('the daemon does not sample the rate at every start: the line says so instead of claiming 0 MB a minute', () => {
    const r = walRetentionResult(512, null);
    assert.equal(r.status, 'pass');
    assert.equal(r.message, 'max_slot_wal_keep_size = 512 MB (the source\'s write rate was not sampled: "walbridge preflight" measures it)');
    assert.doesNotMatch(r.message, /per minute|indefinitely/);
  });
});
