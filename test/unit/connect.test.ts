/**
 * How walbridge connects: TLS by default for anything not local, and connection errors that
 * tell the operator what to check (IPv6 on Railway, Supabase's IPv4 add-on, the password).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { clientConfig, explainConnectError, tlsFor } from '../../src/pg/connect.js';
import { WalbridgeError } from '../../src/errors.js';
import { urlWithLogin } from '../harness/urls.js';

const u = (s: string) => new URL(s);

describe('TLS', () => {
  test('on by default for remote hosts (Supabase requires it), without pinning the CA unless asked', () => {
    assert.deepEqual(tlsFor(u('postgresql://p@db.abcd.supabase.co:5432/postgres')), { rejectUnauthorized: false });
    assert.deepEqual(tlsFor(u('postgresql://p@10.1.2.3/db?sslmode=require')), { rejectUnauthorized: false });
    assert.deepEqual(tlsFor(u('postgresql://p@db.example.com/db?sslmode=verify-full')), { rejectUnauthorized: true });
  });
  test('off for local hosts and Railway\'s private network, or when the URL says so', () => {
    for (const url of ['postgresql://p@localhost/db', 'postgresql://p@127.0.0.1:5433/db', 'postgresql://p@[::1]/db', 'postgresql://p@postgres.railway.internal:5432/railway', 'postgresql://p@db.example.com/db?sslmode=disable']) {
      assert.equal(tlsFor(u(url)), false, url);
    }
  });
  test('sslmode is decided by walbridge, not re-read by the driver as verify-full', () => {
    const c = clientConfig('postgresql://p@db.example.com/db?sslmode=require&application_name=x', { side: 'source', applicationName: 'walbridge' });
    assert.doesNotMatch(String(c.connectionString), /sslmode/);
    assert.deepEqual(c.ssl, { rejectUnauthorized: false });
  });
});

describe('connection errors say what to check', () => {
  const supabase = urlWithLogin('postgresql://db.abcdefgh.supabase.co:5432/postgres', 'postgres', 'pw-9f1c');
  test('an unreachable IPv6-only Supabase host names Railway\'s outbound IPv6 and the IPv4 add-on', () => {
    const err = explainConnectError(Object.assign(new Error('connect ENETUNREACH 2a05:d014::1:5432'), { code: 'ENETUNREACH', address: '2a05:d014::1' }), supabase, 'source');
    assert.ok(err instanceof WalbridgeError);
    assert.match(err.message, /IPv6/);
    assert.match(err.hint ?? '', /outbound IPv6/);
    assert.match(err.hint ?? '', /IPv4 add-on/);
    assert.equal(err.transient, true, 'retried: the operator may be fixing it');
  });
  test('a wrong password names the variable to fix, and never the password', () => {
    const err = explainConnectError(Object.assign(new Error('password authentication failed for user "postgres"'), { code: '28P01' }), supabase, 'source');
    assert.equal(err.kind, 'auth');
    assert.match(err.hint ?? '', /SOURCE_DATABASE_URL/);
    assert.doesNotMatch(`${err.message} ${err.hint}`, /pw-9f1c/);
  });
  test('an unknown host names the host format to use', () => {
    const err = explainConnectError(Object.assign(new Error('getaddrinfo ENOTFOUND db.abcdefgh.supabase.co'), { code: 'ENOTFOUND' }), supabase, 'source');
    assert.match(err.hint ?? '', /db\.<project-ref>\.supabase\.co/);
  });
  test('a refused connection is transient (the server may be restarting)', () => {
    const err = explainConnectError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }), urlWithLogin('postgresql://127.0.0.1/db', 'a', 'b'), 'target');
    assert.equal(err.transient, true);
    assert.match(err.message, /target database 127\.0\.0\.1:5432\/db/);
  });
});
