/**
 * Secrets never leave the process: redactSecrets / redactUrl, and the pino logger every part
 * of the daemon writes through. The logger is given an in-memory destination and each test
 * checks the JSON lines an operator (or a log drain) would actually receive.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config.js';
import { WalbridgeError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { redactSecrets, redactUrl, registerSecret } from '../../src/redact.js';
import { loginAsGiven, supabasePoolerUrl, urlWithLogin } from '../harness/urls.js';

const enc = encodeURIComponent;

/** Every form a password could take in a line: raw, percent-encoded, JSON-escaped. */
function formsOf(secret: string): string[] {
  return [...new Set([secret, enc(secret), JSON.stringify(secret).slice(1, -1)])];
}

function assertNoSecret(text: string, secret: string): void {
  for (const form of formsOf(secret)) {
    assert.ok(!text.includes(form), `secret ${JSON.stringify(form)} found in:\n${text}`);
  }
}

// Each test uses its own passwords: registered secrets are process-wide, and a password that an
// earlier test registered would be removed for the wrong reason.

describe('redactSecrets', () => {
  test('removes the password of a postgres URL and keeps user, host and database', () => {
    const pw = 'plainPass123';
    const text = `connect to ${urlWithLogin('postgresql://db.abcdefgh.supabase.co:5432/postgres', 'app_user', pw)} failed`;
    const out = redactSecrets(text);
    assertNoSecret(out, pw);
    assert.ok(out.includes('app_user'), out);
    assert.ok(out.includes('@db.abcdefgh.supabase.co:5432/postgres failed'), out);
  });

  test('removes a percent-encoded password with special characters', () => {
    const pw = 'P@ss/w:rd#?&%é 1';
    const out = redactSecrets(`url=${urlWithLogin('postgres://h:5432/db', 'postgres', pw)}`);
    assertNoSecret(out, pw);
    assert.ok(out.includes('@h:5432/db'), out);
  });

  test('handles users with special characters (Supabase pooler user, percent-encoded user)', () => {
    const pw1 = 'poolerPw-98';
    const pw2 = 'encodedUserPw-77';
    const out = redactSecrets(
      `a ${supabasePoolerUrl(6543, pw1, 'postgres.abcdefghijklmnop')} ` + `b ${urlWithLogin('postgresql://h/db', 'us@er+x', pw2)}`,
    );
    assertNoSecret(out, pw1);
    assertNoSecret(out, pw2);
    assert.ok(out.includes('aws-0-eu-central-1.pooler.supabase.com:6543/postgres'), out);
  });

  test('removes every URL password in a string, and leaves a URL without one alone', () => {
    const text = `source ${urlWithLogin('postgres://h1/db', 'a', 'pwOne111')} target ${urlWithLogin('postgresql://h2/db', 'b', 'pwTwo222')} other postgresql://c@h3/db`;
    const out = redactSecrets(text);
    assertNoSecret(out, 'pwOne111');
    assertNoSecret(out, 'pwTwo222');
    assert.ok(out.includes('postgresql://c@h3/db'), out);
  });

  test('removes password=... in key-value connection strings and query strings, keeping the rest', () => {
    for (const [text, pw, kept] of [
      ['host=db.example.com port=5432 password=kvSecret1 dbname=app', 'kvSecret1', ['host=db.example.com port=5432', 'dbname=app']],
      ['host=db.example.com password=kvSecret2;dbname=app', 'kvSecret2', ['host=db.example.com', 'dbname=app']],
      ['postgresql://u@h/db?sslmode=require&password=qsSecret3&x=1', 'qsSecret3', ['postgresql://u@h/db?sslmode=require&', '&x=1']],
      ['PASSWORD=upperSecret4 user=x', 'upperSecret4', ['user=x']],
    ] as const) {
      const out = redactSecrets(text);
      assertNoSecret(out, pw);
      for (const k of kept) assert.ok(out.includes(k), `${JSON.stringify(k)} lost from ${out}`);
    }
  });

  test("removes libpq's quoted and spaced password values", () => {
      assertNoSecret(redactSecrets("host=db password='two words' dbname=app"), 'two words');
      assertNoSecret(redactSecrets('host=db password = spacedSecret dbname=app'), 'spacedSecret');
    },
  );

  test('removes a registered secret wherever it appears', () => {
    const pw = 'Reg1stered-Δ!';
    registerSecret(pw);
    for (const text of [
      `auth failed, password was ${pw}.`,
      `{"password":"${pw}"}`,
      `encoded: ${enc(pw)}`,
      `${pw}${pw}`,
      urlWithLogin('postgresql://h/db', 'u', pw),
    ]) {
      assertNoSecret(redactSecrets(text), pw);
    }
  });

  test(
    "a registered password with a raw '@' is removed whole from a URL",
    () => {
      // `new URL` (and so pg and loadConfig) read the password as everything up to the last '@'.
      const pw = 'at@sign99';
      const url = loginAsGiven('postgresql://', 'u', pw, 'h/db');
      assert.equal(decodeURIComponent(new URL(url).password), pw);
      registerSecret(pw);
      const out = redactSecrets(`connect to ${url}`);
      assert.ok(!out.includes('sign99'), out);
    },
  );

  test('text without secrets is unchanged', () => {
    const text = 'copied 1,234 rows of public.users at 16/B374D848 (host db.example.com)';
    assert.equal(redactSecrets(text), text);
  });
});

describe('redactUrl', () => {
  test('keeps scheme, user, host, port, database and harmless parameters; hides the password', () => {
    const pw = 'urlPw/#?@é';
    const out = redactUrl(urlWithLogin('postgresql://db.abcdefgh.supabase.co:5432/postgres?sslmode=require', 'postgres', pw));
    assertNoSecret(out, pw);
    const u = new URL(out);
    assert.equal(u.protocol, 'postgresql:');
    assert.equal(u.username, 'postgres');
    assert.equal(u.hostname, 'db.abcdefgh.supabase.co');
    assert.equal(u.port, '5432');
    assert.equal(u.pathname, '/postgres');
    assert.equal(u.searchParams.get('sslmode'), 'require');
    assert.notEqual(u.password, '');
  });

  test('hides secrets passed as query parameters', () => {
    const out = redactUrl('postgresql://u@h:5432/db?password=qpSecret55&sslmode=require');
    assertNoSecret(out, 'qpSecret55');
    assert.equal(new URL(out).searchParams.get('sslmode'), 'require');
  });

  test('a URL without a password is shown as is', () => {
    assert.equal(new URL(redactUrl('postgresql://u@h:5432/db')).href, new URL('postgresql://u@h:5432/db').href);
  });

  test('something that is not a URL still loses its password', () => {
    const out = redactUrl('host=h password=notUrlSecret66');
    assertNoSecret(out, 'notUrlSecret66');
    assert.ok(out.includes('host=h'));
  });
});

describe('logger', () => {
  const SOURCE_PW = 'Src:p@ss/w#rd?é-1';
  const TARGET_PW = 'Tgt "q" \\b%-2';
  const SOURCE_URL = urlWithLogin('postgresql://db.abcdefghijklmnop.supabase.co:5432/postgres', 'postgres', SOURCE_PW);
  const TARGET_URL = urlWithLogin('postgresql://monorail.proxy.rlwy.net:41234/railway', 'railway', TARGET_PW);

  function capture() {
    const lines: string[] = [];
    const log = createLogger('info', { write: (s: string) => void lines.push(s) });
    const parsed = () => lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    return { log, lines, parsed };
  }

  function assertNoPasswords(lines: string[]): void {
    assert.ok(lines.length > 0, 'nothing was logged');
    for (const line of lines) {
      assertNoSecret(line, SOURCE_PW);
      assertNoSecret(line, TARGET_PW);
    }
  }

  test('an Error under `err` whose message quotes the URL: no password, the message is still readable', () => {
    const { log, lines, parsed } = capture();
    log.error({ err: new Error(`could not connect to ${SOURCE_URL}: timeout`) }, 'source unreachable');
    assertNoPasswords(lines);
    const err = parsed()[0]?.err as { message: string; stack?: string };
    assert.ok(err.message.startsWith('could not connect to postgresql://postgres:'), err.message);
    assert.ok(err.message.endsWith('@db.abcdefghijklmnop.supabase.co:5432/postgres: timeout'), err.message);
  });

  test(
    'an Error logged directly: no password in the line, even a registered one',
    () => {
      const pw = 'DirectErrPw-31';
      registerSecret(pw); // as loadConfig does at start-up
      const { log, lines, parsed } = capture();
      log.error(new Error(`could not connect to ${urlWithLogin('postgresql://db.abcdefghijklmnop.supabase.co:5432/postgres', 'postgres', pw)}: timeout`));
      const err = parsed()[0]?.err as { message: string };
      assert.ok(err.message.includes('@db.abcdefghijklmnop.supabase.co:5432/postgres: timeout'), err.message);
      for (const line of lines) assertNoSecret(line, pw);
    },
  );

  test('the cause of a WalbridgeError is redacted too', () => {
    const { log, lines, parsed } = capture();
    const cause = new Error(`password authentication failed for ${TARGET_URL}`);
    log.error({ err: new WalbridgeError('auth', 'cannot log in to the target', { cause, hint: 'check the password' }) }, 'stopping');
    assertNoPasswords(lines);
    const err = parsed()[0]?.err as { kind: string; cause: string };
    assert.equal(err.kind, 'auth');
    assert.ok(err.cause.includes('monorail.proxy.rlwy.net:41234/railway'), err.cause);
  });

  test('objects with URL fields, top-level and nested, lose the password', () => {
    const { log, lines } = capture();
    log.info({ url: SOURCE_URL }, 'connecting');
    log.info({ sourceUrl: SOURCE_URL, targetUrl: TARGET_URL }, 'configured');
    log.info({ source: { conn: { dsn: SOURCE_URL, list: [TARGET_URL] } } }, 'nested');
    assertNoPasswords(lines);
    assert.ok(lines[2]?.includes('db.abcdefghijklmnop.supabase.co'), 'a nested URL keeps its host');
  });

  test(
    'deeply nested objects and %j/%o arguments lose the password',
    () => {
      const { log, lines } = capture();
      log.info({ a: { b: { c: { d: { e: { dsn: SOURCE_URL } } } } } }, 'deep');
      log.info('config %j', { source: SOURCE_URL });
      log.info('config %o', { target: TARGET_URL });
      assertNoPasswords(lines);
    },
  );

  test('a plain message with the password (after loadConfig registered it) is redacted; %s arguments too', () => {
    loadConfig({ SOURCE_DATABASE_URL: SOURCE_URL, TARGET_DATABASE_URL: TARGET_URL });
    const { log, lines, parsed } = capture();
    log.warn(`server said: password "${SOURCE_PW}" rejected`);
    log.warn(`retrying with ${TARGET_PW}`);
    log.info('connecting to %s', TARGET_URL);
    log.info({ note: `raw ${SOURCE_PW} inside a field` }, 'field');
    assertNoPasswords(lines);
    const msgs = parsed().map((l) => l.msg as string);
    assert.ok(msgs[0]?.startsWith('server said: password "') && msgs[0].endsWith('" rejected'), msgs[0]);
    assert.ok(msgs[2]?.includes('monorail.proxy.rlwy.net:41234/railway'), msgs[2]);
  });
});
