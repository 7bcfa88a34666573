/**
 * LSN text <-> bigint. Postgres prints an LSN as two 32-bit hex halves without leading zeros
 * (`%X/%X`); its value is hi * 2^32 + lo. A long-lived cluster's WAL position can pass 2^53,
 * where a JS Number can no longer tell neighbouring positions apart.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { formatLsn, lsnDistance, maxLsn, parseLsn, parseLsnOrNull, ZERO_LSN } from '../../src/lsn.js';

describe('parseLsn / formatLsn', () => {
  test('round-trips the text Postgres prints, including the highest position', () => {
    for (const text of ['0/0', '0/1', '1/0', '16/B374D848', 'FFFFFFFF/0', '0/FFFFFFFF', 'FFFFFFFF/FFFFFFFF']) {
      assert.equal(formatLsn(parseLsn(text)), text);
    }
  });

  test('the value is hi * 2^32 + lo, as pg_lsn arithmetic counts it', () => {
    // SELECT '16/B374D848'::pg_lsn - '0/0'  →  97500059720
    assert.equal(parseLsn('16/B374D848'), 97500059720n);
    assert.equal(parseLsn('0/0'), 0n);
    assert.equal(parseLsn('1/0'), 4294967296n);
    assert.equal(parseLsn('FFFFFFFF/FFFFFFFF'), 2n ** 64n - 1n);
  });

  test('accepts lower-case hex and leading zeros, and prints the canonical form', () => {
    assert.equal(parseLsn('16/b374d848'), parseLsn('16/B374D848'));
    assert.equal(formatLsn(parseLsn('16/b374d848')), '16/B374D848');
    assert.equal(formatLsn(parseLsn('00000000/0000000A')), '0/A');
  });

  test('rejects text that is not an LSN', () => {
    const bad = [
      '16B374D848', // no slash
      '1/2/3',
      'G/0',
      '0/G',
      '',
      '/',
      '/0',
      '0/',
      '123456789/0', // 9 hex digits in the high half
      '0/123456789', // 9 hex digits in the low half
      '-1/0',
      '0x16/0',
      '16 / B374D848',
    ];
    for (const text of bad) {
      assert.throws(() => parseLsn(text), /not an LSN/, `accepted ${JSON.stringify(text)}`);
    }
  });

  test('formatLsn refuses values outside 0 .. 2^64-1', () => {
    assert.throws(() => formatLsn(-1n), /out of range/);
    assert.throws(() => formatLsn(2n ** 64n), /out of range/);
  });

  test('parseLsnOrNull passes null and undefined through and parses the rest', () => {
    assert.equal(parseLsnOrNull(null), null);
    assert.equal(parseLsnOrNull(undefined), null);
    assert.equal(parseLsnOrNull('16/B374D848'), parseLsn('16/B374D848'));
    assert.throws(() => parseLsnOrNull('nope'), /not an LSN/);
  });
});

describe('ordering and distance beyond 2^53', () => {
  // 0x200000 << 32 is exactly 2^53: the first position where a Number loses single bytes.
  const at2p53 = parseLsn('200000/0');
  const next = parseLsn('200000/1');
  const top = parseLsn('FFFFFFFF/FFFFFFFF');
  const belowTop = parseLsn('FFFFFFFF/FFFFFFFE');

  test('a JS Number cannot tell these positions apart', () => {
    assert.equal(Number(at2p53), 2 ** 53);
    assert.equal(Number(next), Number(at2p53));
    assert.equal(Number(top) - Number(belowTop), 0);
  });

  test('bigint LSNs order and subtract exactly there', () => {
    assert.ok(at2p53 < next);
    assert.ok(belowTop < top);
    assert.equal(lsnDistance(at2p53, next), 1n);
    assert.equal(lsnDistance(belowTop, top), 1n);
    assert.equal(lsnDistance(ZERO_LSN, top), 2n ** 64n - 1n);
    assert.equal(lsnDistance(parseLsn('16/B374D848'), parseLsn('17/0')), 0x17_0000_0000n - 0x16_b374_d848n);
  });

  test('distance is 0 when the target position is not ahead', () => {
    assert.equal(lsnDistance(next, at2p53), 0n);
    assert.equal(lsnDistance(top, top), 0n);
  });
});

describe('maxLsn', () => {
  test('ignores null and undefined and returns the greatest position', () => {
    assert.equal(maxLsn(null, parseLsn('16/B374D848'), undefined, parseLsn('16/B374D847')), parseLsn('16/B374D848'));
  });

  test('tells neighbours beyond 2^53 apart', () => {
    const a = parseLsn('FFFFFFFF/FFFFFFFE');
    const b = parseLsn('FFFFFFFF/FFFFFFFF');
    assert.equal(maxLsn(b, a), b);
    assert.equal(maxLsn(a, null, b), b);
  });

  test('is 0/0 when nothing is known', () => {
    assert.equal(maxLsn(), ZERO_LSN);
    assert.equal(maxLsn(null, undefined), ZERO_LSN);
    assert.equal(formatLsn(maxLsn(null)), '0/0');
  });
});
