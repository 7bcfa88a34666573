/**
 * decodePgoutput against messages built byte by byte from the protocol documentation
 * (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html, version 1).
 * Values must come back as the exact text the source sent: never a Number, a Date or a
 * placeholder for an unchanged TOAST value.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseLsn } from '../../src/lsn.js';
import {
  commitEndLsn,
  decodePgoutput,
  UNCHANGED_TOAST,
  Tuple,
  type PgoutputMessage,
} from '../../src/replicator/pgoutput.js';

/** Big-endian writer for the protocol's Int8/Int16/Int32/Int64/String/Byten fields. */
class Encoder {
  private readonly parts: Buffer[] = [];
  byte(ch: string): this {
    return this.int8(ch.charCodeAt(0));
  }
  int8(v: number): this {
    const b = Buffer.alloc(1);
    b.writeUInt8(v);
    this.parts.push(b);
    return this;
  }
  int16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeInt16BE(v);
    this.parts.push(b);
    return this;
  }
  int32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    this.parts.push(b);
    return this;
  }
  uint32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    this.parts.push(b);
    return this;
  }
  int64(v: bigint): this {
    const b = Buffer.alloc(8);
    if (v < 0n) b.writeBigInt64BE(v);
    else b.writeBigUInt64BE(v);
    this.parts.push(b);
    return this;
  }
  /** NUL-terminated UTF-8 string. */
  string(s: string): this {
    this.parts.push(Buffer.from(s, 'utf8'), Buffer.from([0]));
    return this;
  }
  bytes(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** A column in TupleData: text, NULL, or unchanged TOAST. */
type Col = string | null | typeof UNCHANGED_TOAST;

function tupleData(e: Encoder, cols: Col[]): Encoder {
  e.int16(cols.length);
  for (const c of cols) {
    if (c === null) e.byte('n');
    else if (c === UNCHANGED_TOAST) e.byte('u');
    else {
      const bytes = Buffer.from(c, 'utf8');
      e.byte('t').int32(bytes.length).bytes(bytes);
    }
  }
  return e;
}

const msg = {
  begin: (finalLsn: bigint, commitTime: bigint, xid: number) =>
    new Encoder().byte('B').int64(finalLsn).int64(commitTime).uint32(xid).build(),
  commit: (flags: number, commitLsn: bigint, endLsn: bigint, commitTime: bigint) =>
    new Encoder().byte('C').int8(flags).int64(commitLsn).int64(endLsn).int64(commitTime).build(),
  relation: (
    relid: number,
    schema: string,
    name: string,
    identity: string,
    cols: Array<{ key: boolean; name: string; oid: number; typmod: number }>,
  ) => {
    const e = new Encoder().byte('R').uint32(relid).string(schema).string(name).byte(identity).int16(cols.length);
    for (const c of cols) e.int8(c.key ? 1 : 0).string(c.name).uint32(c.oid).int32(c.typmod);
    return e.build();
  },
  insert: (relid: number, cols: Col[]) => tupleData(new Encoder().byte('I').uint32(relid).byte('N'), cols).build(),
  update: (relid: number, old: { kind: 'K' | 'O'; cols: Col[] } | null, cols: Col[]) => {
    const e = new Encoder().byte('U').uint32(relid);
    if (old) tupleData(e.byte(old.kind), old.cols);
    return tupleData(e.byte('N'), cols).build();
  },
  delete: (relid: number, kind: 'K' | 'O', cols: Col[]) => tupleData(new Encoder().byte('D').uint32(relid).byte(kind), cols).build(),
  truncate: (relids: number[], flags: number) => {
    const e = new Encoder().byte('T').uint32(relids.length).int8(flags);
    for (const r of relids) e.uint32(r);
    return e.build();
  },
};

/** Microseconds since 2000-01-01 00:00:00 UTC, the protocol's timestamp. */
function pgTime(iso: string, extraMicros: number): bigint {
  return BigInt(Date.parse(iso) - Date.UTC(2000, 0, 1)) * 1000n + BigInt(extraMicros);
}

function expectTag<T extends PgoutputMessage['tag']>(m: PgoutputMessage, tag: T): Extract<PgoutputMessage, { tag: T }> {
  assert.equal(m.tag, tag);
  return m as Extract<PgoutputMessage, { tag: T }>;
}

// LSNs above 2^53, where a Number would round.
const FINAL_LSN = parseLsn('200000/1'); // 2^53 + 1
const END_LSN = parseLsn('FFFFFFFF/FFFFFFFF');
const COMMIT_TIME = pgTime('2024-01-01T00:00:00.123Z', 456); // 2024-01-01 00:00:00.123456 UTC
const RELID = 0x80000001; // OIDs are unsigned: above 2^31 must not come back negative

// Values whose text a JS round trip would change.
const EXACT_VALUES = [
  '9223372036854775807', // int8 max: Number would print 9223372036854776000
  '-9223372036854775808',
  '12345678901234567890.123456789012345678', // numeric
  '2024-01-01 00:00:00.123456+00', // timestamptz: Date would drop the microseconds
  '\\x00ff', // bytea hex output
  '{"a": 1, "b": [1, 2]}', // jsonb text
  '{1,NULL,"a b"}', // array
  '1e400',
  '0',
];

describe('transaction framing', () => {
  test('Begin: final LSN above 2^53, commit time in microseconds, xid above 2^31', () => {
    const m = expectTag(decodePgoutput(msg.begin(FINAL_LSN, COMMIT_TIME, 0xfffffff0)), 'begin');
    assert.equal(m.finalLsn, FINAL_LSN);
    assert.equal(m.finalLsn - parseLsn('200000/0'), 1n);
    assert.equal(m.commitTime, COMMIT_TIME);
    assert.equal(m.xid, 0xfffffff0);
  });

  test('Commit: commit LSN, end LSN and time each read from their own field', () => {
    const commitLsn = parseLsn('200000/1');
    const buf = msg.commit(0, commitLsn, END_LSN, COMMIT_TIME);
    const m = expectTag(decodePgoutput(buf), 'commit');
    assert.equal(m.commitLsn, commitLsn);
    assert.equal(m.endLsn, END_LSN);
    assert.equal(m.commitTime, COMMIT_TIME);
  });

  test('commitEndLsn reads the same end LSN straight from the bytes', () => {
    for (const [commit, end] of [
      [parseLsn('16/B374D848'), parseLsn('16/B374D878')],
      [parseLsn('200000/1'), parseLsn('200000/31')],
      [parseLsn('0/0'), END_LSN],
    ] as const) {
      const buf = msg.commit(0, commit, end, COMMIT_TIME);
      assert.equal(commitEndLsn(buf), end);
      assert.equal(commitEndLsn(buf), expectTag(decodePgoutput(buf), 'commit').endLsn);
    }
  });

  test('Commit flags do not shift the fields after them', () => {
    const m = expectTag(decodePgoutput(msg.commit(0xff, FINAL_LSN, END_LSN, COMMIT_TIME)), 'commit');
    assert.equal(m.commitLsn, FINAL_LSN);
    assert.equal(m.endLsn, END_LSN);
  });
});

describe('Relation', () => {
  const cols = [
    { key: true, name: 'id', oid: 20, typmod: -1 },
    { key: false, name: 'a"b', oid: 25, typmod: -1 },
    { key: false, name: 'Preis €', oid: 1700, typmod: ((10 << 16) | 2) + 4 }, // numeric(10,2)
    { key: true, name: 'tenant', oid: 0xfffffff0, typmod: -1 }, // user type OID above 2^31
  ];

  test('schema, name, replica identity and columns with key flag, type OID and typmod', () => {
    const m = expectTag(decodePgoutput(msg.relation(RELID, 'public', 'Kundenbewertungen Ü', 'd', cols)), 'relation');
    assert.equal(m.relationId, RELID);
    assert.equal(m.schema, 'public');
    assert.equal(m.name, 'Kundenbewertungen Ü');
    assert.equal(m.replicaIdentity, 'd');
    assert.deepEqual(m.columns, [
      { name: 'id', typeOid: 20, typeMod: -1, isKey: true },
      { name: 'a"b', typeOid: 25, typeMod: -1, isKey: false },
      { name: 'Preis €', typeOid: 1700, typeMod: 655366, isKey: false },
      { name: 'tenant', typeOid: 0xfffffff0, typeMod: -1, isKey: true },
    ]);
  });

  test('replica identity full, and a relation with no columns', () => {
    const m = expectTag(decodePgoutput(msg.relation(16390, 'Mixed Schema', 't', 'f', [])), 'relation');
    assert.equal(m.replicaIdentity, 'f');
    assert.equal(m.schema, 'Mixed Schema');
    assert.deepEqual(m.columns, []);
  });

  test('an unknown replica identity is refused', () => {
    assert.throws(() => decodePgoutput(msg.relation(16390, 'public', 't', 'x', cols)), /replica identity/);
  });
});

describe('tuple values', () => {
  test('Insert: values come back as the exact strings sent', () => {
    const m = expectTag(decodePgoutput(msg.insert(RELID, EXACT_VALUES)), 'insert');
    assert.equal(m.relationId, RELID);
    assert.deepEqual(m.newTuple.values(), EXACT_VALUES);
    for (const v of m.newTuple.values()) assert.equal(typeof v, 'string');
  });

  test('rows decoded long ago keep their values while many more are decoded (a batch holds thousands)', () => {
    const rows = Array.from({ length: 50_000 }, (_, i): Col[] => [String(i), i % 3 === 0 ? null : `v${i}`, i % 5 === 0 ? UNCHANGED_TOAST : `w${i}`]);
    const tuples = rows.map((r) => expectTag(decodePgoutput(msg.insert(1, r)), 'insert').newTuple);
    tuples.forEach((t, i) => assert.deepEqual(t.values(), rows[i]));
  });

  test('lengths are in bytes: multi-byte UTF-8 does not shift the next column', () => {
    const values = ['🦄', 'Ü', '日本語', 'e\u0301', '🏳️‍🌈 flag', 'after'];
    const m = expectTag(decodePgoutput(msg.insert(1, values)), 'insert');
    assert.deepEqual(m.newTuple.values(), values);
  });

  test('NULL, unchanged TOAST and the empty string are three different things', () => {
    const m = expectTag(decodePgoutput(msg.insert(1, [null, UNCHANGED_TOAST, '', 'x'])), 'insert');
    const [nul, toast, empty, x] = m.newTuple.values();
    assert.equal(nul, null);
    assert.equal(toast, UNCHANGED_TOAST);
    assert.equal(empty, '');
    assert.equal(x, 'x');
    assert.notEqual(toast, null);
    assert.notEqual(toast, '');
    assert.equal(typeof toast, 'symbol');
  });

  test('values stay in the message: nothing is copied or decoded until asked', () => {
    const buf = msg.insert(1, ['abc', null, '🦄']);
    const m = expectTag(decodePgoutput(buf), 'insert');
    assert.equal(m.newTuple.buf, buf);
    assert.equal(m.newTuple.byteLength(2), Buffer.byteLength('🦄'));
    const out = Buffer.alloc(3);
    m.newTuple.copyValue(0, out, 0);
    assert.equal(out.toString(), 'abc');
    assert.equal(m.newTuple.bytes(1), null);
  });

  test('row keys: equal values give equal keys, any difference (NULL vs empty, column boundaries) another', () => {
    const k = (vals: Col[], idx: number[]) => Tuple.of(vals).keyOf(idx);
    assert.equal(k(['42', 'x'], [0]), k(['42', 'y'], [0]));
    assert.notEqual(k(['a', 'bc'], [0, 1]), k(['ab', 'c'], [0, 1]));
    assert.notEqual(k([null, 'x'], [0, 1]), k(['', 'x'], [0, 1]));
    assert.notEqual(k(['n', 'x'], [0, 1]), k([null, 'x'], [0, 1]));
    assert.equal(k(['Ü🦄', null], [0, 1]), k(['Ü🦄', null], [0, 1]));
    assert.notEqual(k(['Ü'], [0]), k(['Ã\u009c'], [0]));
    // Keys that print as whole numbers: distinct texts stay distinct, up to and past what a double holds exactly.
    assert.equal(k(['42', 'x'], [0]), k(['42', 'y'], [0]));
    assert.notEqual(k(['42'], [0]), k(['042'], [0]));
    assert.notEqual(k(['0'], [0]), k(['-0'], [0]));
    assert.notEqual(k(['0'], [0]), k([''], [0]));
    assert.notEqual(k(['999999999999999'], [0]), k(['999999999999998'], [0]));
    assert.notEqual(k(['9007199254740993'], [0]), k(['9007199254740992'], [0]));
    assert.notEqual(k(['12345678901234567890'], [0]), k(['12345678901234567891'], [0]));
    assert.equal(k(['9007199254740993'], [0]), k(['9007199254740993'], [0]));
    assert.equal(k([UNCHANGED_TOAST, 'x'], [0, 1]), null, 'an unchanged TOAST value cannot name a row');
    assert.ok(Tuple.of(['1', null]).sameValue(0, Tuple.of(['1', 'x']), 0));
    assert.ok(!Tuple.of(['1', null]).sameValue(1, Tuple.of(['1', '']), 1));
  });

  test("'b' binary tuple data is refused (walbridge never asks for binary)", () => {
    const buf = new Encoder().byte('I').uint32(1).byte('N').int16(1).byte('b').int32(2).bytes(Buffer.from([0, 1])).build();
    assert.throws(() => decodePgoutput(buf), /binary/);
  });

  test('an unknown tuple data kind is refused', () => {
    const buf = new Encoder().byte('I').uint32(1).byte('N').int16(1).byte('z').build();
    assert.throws(() => decodePgoutput(buf), /tuple data kind/);
  });
});

describe('Update and Delete', () => {
  const newRow: Col[] = ['1', 'new body', UNCHANGED_TOAST];

  test('Update without an old tuple (key unchanged)', () => {
    const m = expectTag(decodePgoutput(msg.update(RELID, null, newRow)), 'update');
    assert.equal(m.relationId, RELID);
    assert.equal(m.oldKind, null);
    assert.equal(m.oldTuple, null);
    assert.deepEqual(m.newTuple.values(), newRow);
  });

  test("Update with a 'K' key tuple (key changed)", () => {
    const m = expectTag(decodePgoutput(msg.update(RELID, { kind: 'K', cols: ['9223372036854775807', null, null] }, newRow)), 'update');
    assert.equal(m.oldKind, 'K');
    assert.deepEqual(m.oldTuple?.values(), ['9223372036854775807', null, null]);
    assert.deepEqual(m.newTuple.values(), newRow);
  });

  test("Update with an 'O' old tuple (REPLICA IDENTITY FULL)", () => {
    const old: Col[] = ['1', 'old body', '2024-01-01 00:00:00.123456+00'];
    const m = expectTag(decodePgoutput(msg.update(RELID, { kind: 'O', cols: old }, newRow)), 'update');
    assert.equal(m.oldKind, 'O');
    assert.deepEqual(m.oldTuple?.values(), old);
    assert.deepEqual(m.newTuple.values(), newRow);
  });

  test("Delete with a 'K' key tuple", () => {
    const m = expectTag(decodePgoutput(msg.delete(RELID, 'K', ['42', null])), 'delete');
    assert.equal(m.relationId, RELID);
    assert.equal(m.oldKind, 'K');
    assert.deepEqual(m.oldTuple?.values(), ['42', null]);
  });

  test("Delete with an 'O' old tuple", () => {
    const m = expectTag(decodePgoutput(msg.delete(RELID, 'O', ['42', '\\x00ff', ''])), 'delete');
    assert.equal(m.oldKind, 'O');
    assert.deepEqual(m.oldTuple?.values(), ['42', '\\x00ff', '']);
  });

  test('Update and Delete missing their required tuple are refused', () => {
    // Update with an old tuple but no 'N' after it.
    const noNew = tupleData(new Encoder().byte('U').uint32(1).byte('K'), ['1']).byte('X').build();
    assert.throws(() => decodePgoutput(noNew), /UPDATE/);
    const deleteNoOld = tupleData(new Encoder().byte('D').uint32(1).byte('N'), ['1']).build();
    assert.throws(() => decodePgoutput(deleteNoOld), /DELETE/);
    const insertNoNew = tupleData(new Encoder().byte('I').uint32(1).byte('K'), ['1']).build();
    assert.throws(() => decodePgoutput(insertNoNew), /INSERT/);
  });
});

describe('Truncate', () => {
  const relids = [16390, 16400, 0x80000002];

  test('several relations and each option bit', () => {
    for (const [flags, cascade, restartIdentity] of [
      [0, false, false],
      [1, true, false],
      [2, false, true],
      [3, true, true],
    ] as const) {
      const m = expectTag(decodePgoutput(msg.truncate(relids, flags)), 'truncate');
      assert.deepEqual(m.relationIds, relids);
      assert.equal(m.cascade, cascade, `flags ${flags}`);
      assert.equal(m.restartIdentity, restartIdentity, `flags ${flags}`);
    }
  });
});

describe('malformed input', () => {
  test('an unknown message type is refused', () => {
    assert.throws(() => decodePgoutput(Buffer.from('Z')), /unknown message type/);
    // Protocol v2 streaming messages are not expected on a v1 stream.
    assert.throws(() => decodePgoutput(new Encoder().byte('S').uint32(1).int8(1).build()), /unknown message type/);
  });

  test('an empty buffer is refused', () => {
    assert.throws(() => decodePgoutput(Buffer.alloc(0)));
  });

  test('every proper prefix of a valid message is refused, never decoded short', () => {
    const messages = [
      msg.begin(FINAL_LSN, COMMIT_TIME, 7),
      msg.commit(0, FINAL_LSN, END_LSN, COMMIT_TIME),
      msg.relation(RELID, 'public', 'Kundenbewertungen Ü', 'd', [
        { key: true, name: 'id', oid: 20, typmod: -1 },
        { key: false, name: 'body', oid: 25, typmod: -1 },
      ]),
      msg.insert(RELID, ['🦄', null, UNCHANGED_TOAST, '9223372036854775807']),
      msg.update(RELID, { kind: 'O', cols: ['1', 'x'] }, ['1', 'y']),
      msg.delete(RELID, 'K', ['1', null]),
      msg.truncate([1, 2, 3], 3),
    ];
    for (const full of messages) {
      assert.doesNotThrow(() => decodePgoutput(full));
      for (let len = 0; len < full.length; len++) {
        const prefix = full.subarray(0, len);
        assert.throws(() => decodePgoutput(prefix), Error, `'${String.fromCharCode(full[0] ?? 0)}' cut at ${len}/${full.length}`);
      }
    }
  });
});
