/**
 * loadConfig(env, overrides): defaults, every bad value reported with the variable to fix, and
 * connection strings validated without ever being echoed back. Every command starts from it
 * the same way (the last part runs the built CLI: `npm run build` first).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadCommandConfig } from '../../src/commands/config.js';
import { loadConfig, type ConfigOverrides } from '../../src/config.js';
import { WalbridgeError } from '../../src/errors.js';
import { loginAsGiven, supabasePoolerUrl, urlWithLogin } from '../harness/urls.js';

type Env = Record<string, string | undefined>;

// Passwords with characters that must be percent-encoded in a URL (and one that survives as is).
const SOURCE_PASSWORD = 'S0urce:p@ss/w#rd?%&é';
const TARGET_PASSWORD = 'T4rget pa$$ "quoted" \\back';
const enc = encodeURIComponent;

const SOURCE_URL = urlWithLogin('postgresql://db.abcdefghijklmnop.supabase.co:5432/postgres', 'postgres', SOURCE_PASSWORD);
const TARGET_URL = urlWithLogin('postgresql://monorail.proxy.rlwy.net:41234/railway', 'railway', TARGET_PASSWORD);

function env(extra: Env = {}): Env {
  return { SOURCE_DATABASE_URL: SOURCE_URL, TARGET_DATABASE_URL: TARGET_URL, ...extra };
}

/** The WalbridgeError loadConfig throws; fails the test if it returns. */
function configError(e: Env, overrides?: ConfigOverrides): WalbridgeError {
  let caught: unknown;
  try {
    loadConfig(e, overrides);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, 'loadConfig accepted a bad configuration');
  assert.ok(caught instanceof WalbridgeError, `expected a WalbridgeError, got ${String(caught)}`);
  assert.equal(caught.kind, 'config');
  return caught;
}

/** Everything about an error that can reach a log line or a terminal. */
function everythingShown(err: Error & { hint?: string | undefined }): string {
  return [err.message, err.hint ?? '', String(err), err.stack ?? '', JSON.stringify(err)].join('\n');
}

const secretForms = (pw: string) => [pw, enc(pw)];

describe('defaults', () => {
  test('only the two URLs set: public schema, slot and publication walbridge, port 8080, level info', () => {
    const c = loadConfig(env());
    assert.equal(c.sourceUrl, SOURCE_URL);
    assert.equal(c.targetUrl, TARGET_URL);
    assert.deepEqual(c.schemas, ['public']);
    assert.equal(c.slotName, 'walbridge');
    assert.equal(c.publicationName, 'walbridge');
    assert.equal(c.port, 8080);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.includeTables, null);
    assert.deepEqual(c.excludeTables, []);
    assert.equal(c.reverse, false);
    assert.equal(c.exitOnError, false);
    assert.equal(c.httpToken, null);
  });

  test('a table group names its slot, publication and state walbridge_<group>; set names win; a bad group name is refused', () => {
    const g = loadConfig(env({ WALBRIDGE_GROUP: 'hot' }));
    assert.deepEqual([g.group, g.slotName, g.publicationName, g.stateSchema], ['hot', 'walbridge_hot', 'walbridge_hot', 'walbridge_hot']);
    const named = loadConfig(env({ WALBRIDGE_GROUP: 'hot', WALBRIDGE_SLOT: 'mine', WALBRIDGE_PUBLICATION: 'pub' }));
    assert.deepEqual([named.slotName, named.publicationName, named.stateSchema], ['mine', 'pub', 'walbridge_hot']);
    const none = loadConfig(env());
    assert.deepEqual([none.group, none.stateSchema], [null, 'walbridge']);
    for (const bad of ['Hot', 'fence', '1x', 'a-b', 'x'.repeat(41)]) {
      assert.match(configError(env({ WALBRIDGE_GROUP: bad })).message, /WALBRIDGE_GROUP must be 1-40 characters/, bad);
    }
  });

  test('empty variables count as unset', () => {
    const c = loadConfig(
      env({ PORT: '', LOG_LEVEL: ' ', WALBRIDGE_SLOT: '', WALBRIDGE_SCHEMAS: '', WALBRIDGE_REVERSE: '', WALBRIDGE_EXIT_ON_ERROR: ' ', WALBRIDGE_HTTP_TOKEN: ' ' }),
    );
    assert.equal(c.port, 8080);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.slotName, 'walbridge');
    assert.deepEqual(c.schemas, ['public']);
    assert.equal(c.reverse, false);
    assert.equal(c.exitOnError, false);
    assert.equal(c.httpToken, null);
  });

  test('lists are split on commas and trimmed', () => {
    const c = loadConfig(
      env({ WALBRIDGE_SCHEMAS: ' public , auth ', WALBRIDGE_TABLES: 'public.mirt_*, auth.users', WALBRIDGE_EXCLUDE_TABLES: 'public.audit_*' }),
    );
    assert.deepEqual(c.schemas, ['public', 'auth']);
    assert.deepEqual(c.includeTables, ['public.mirt_*', 'auth.users']);
    assert.deepEqual(c.excludeTables, ['public.audit_*']);
  });
});

describe('connection URLs', () => {
  test('TARGET_DATABASE_URL falls back to DATABASE_URL (Railway sets that one)', () => {
    const c = loadConfig({ SOURCE_DATABASE_URL: SOURCE_URL, DATABASE_URL: TARGET_URL });
    assert.equal(c.targetUrl, TARGET_URL);
  });

  test('TARGET_DATABASE_URL wins over DATABASE_URL when both are set', () => {
    const other = urlWithLogin('postgresql://other.example.com:5432/db', 'u', 'pw');
    const c = loadConfig({ SOURCE_DATABASE_URL: SOURCE_URL, TARGET_DATABASE_URL: TARGET_URL, DATABASE_URL: other });
    assert.equal(c.targetUrl, TARGET_URL);
  });

  test('a missing or empty SOURCE_DATABASE_URL is named', () => {
    for (const value of [undefined, '', '   ']) {
      const err = configError({ TARGET_DATABASE_URL: TARGET_URL, SOURCE_DATABASE_URL: value });
      assert.match(err.message, /SOURCE_DATABASE_URL/);
    }
  });

  test('a missing target names TARGET_DATABASE_URL', () => {
    const err = configError({ SOURCE_DATABASE_URL: SOURCE_URL });
    assert.match(err.message, /TARGET_DATABASE_URL/);
  });

  test('a value that is not a URL is named, with the expected shape', () => {
    const err = configError(env({ SOURCE_DATABASE_URL: 'db.abcdefghijklmnop.supabase.co:5432' }));
    assert.match(err.message, /SOURCE_DATABASE_URL/);
    assert.match(err.message, /postgresql:\/\//);
  });

  test('a URL of another scheme is refused', () => {
    for (const url of [urlWithLogin('mysql://h:3306/db', 'u', 'pw'), 'https://db.example.com/db', 'jdbc:postgresql://h:5432/db']) {
      const err = configError(env({ TARGET_DATABASE_URL: url }));
      assert.match(err.message, /TARGET_DATABASE_URL/);
      assert.match(err.message, /postgresql:\/\//);
    }
  });

  test('both postgres:// and postgresql:// are accepted', () => {
    const c = loadConfig(env({ SOURCE_DATABASE_URL: SOURCE_URL.replace('postgresql://', 'postgres://') }));
    assert.ok(c.sourceUrl.startsWith('postgres://'));
  });

  test('a Supabase pooler host is refused with the direct-connection fix, on either pooler port', () => {
    for (const hostPort of ['aws-0-eu-central-1.pooler.supabase.com:6543', 'aws-0-eu-central-1.pooler.supabase.com:5432']) {
      const url = urlWithLogin(`postgresql://${hostPort}/postgres`, 'postgres.abcdefghijklmnop', SOURCE_PASSWORD);
      const err = configError(env({ SOURCE_DATABASE_URL: url }));
      assert.match(err.message, /SOURCE_DATABASE_URL/);
      assert.match(err.message, /pooler/i);
      assert.ok(err.message.includes('db.<project-ref>.supabase.co'), err.message);
    }
  });

  test('the direct Supabase host is accepted', () => {
    assert.doesNotThrow(() => loadConfig(env()));
  });

  test('source and target naming the same database is an error', () => {
    const same = [
      [SOURCE_URL, SOURCE_URL],
      // Host names are case-insensitive, 5432 is the default port; user and password do not matter.
      [urlWithLogin('postgresql://DB.Example.com/app', 'a', 'x'), urlWithLogin('postgresql://db.example.com:5432/app', 'b', 'y')],
    ];
    for (const [s, t] of same) {
      const err = configError({ SOURCE_DATABASE_URL: s, TARGET_DATABASE_URL: t });
      assert.match(err.message, /same database/);
    }
  });

  test('same host with another database or port is allowed', () => {
    assert.doesNotThrow(() =>
      loadConfig({ SOURCE_DATABASE_URL: urlWithLogin('postgresql://h/app', 'a', 'x'), TARGET_DATABASE_URL: urlWithLogin('postgresql://h/app_new', 'a', 'x') }),
    );
    assert.doesNotThrow(() =>
      loadConfig({ SOURCE_DATABASE_URL: urlWithLogin('postgresql://h:5432/app', 'a', 'x'), TARGET_DATABASE_URL: urlWithLogin('postgresql://h:5433/app', 'a', 'x') }),
    );
  });
});

describe('other settings', () => {
  test('PORT outside 1..65535 or not a whole number is named', () => {
    for (const port of ['0', '70000', '65536', 'abc', '80.5', '-1', '8080x']) {
      const err = configError(env({ PORT: port }));
      assert.match(err.message, /\bPORT\b/, `PORT=${port}`);
    }
  });

  test('PORT at the edges is accepted as a number', () => {
    assert.equal(loadConfig(env({ PORT: '1' })).port, 1);
    assert.equal(loadConfig(env({ PORT: '65535' })).port, 65535);
  });

  test('WALBRIDGE_SLOT must be a valid replication slot name', () => {
    for (const slot of ['Walbridge', 'wal-bridge', 'a'.repeat(64), 'wal bridge']) {
      const err = configError(env({ WALBRIDGE_SLOT: slot }));
      assert.match(err.message, /WALBRIDGE_SLOT/, `WALBRIDGE_SLOT=${slot}`);
    }
    assert.equal(loadConfig(env({ WALBRIDGE_SLOT: 'a'.repeat(63) })).slotName, 'a'.repeat(63));
    assert.equal(loadConfig(env({ WALBRIDGE_SLOT: 'walbridge_2' })).slotName, 'walbridge_2');
  });

  test('LOG_LEVEL must be a known level', () => {
    const err = configError(env({ LOG_LEVEL: 'loud' }));
    assert.match(err.message, /LOG_LEVEL/);
    assert.equal(loadConfig(env({ LOG_LEVEL: 'debug' })).logLevel, 'debug');
  });

  test('WALBRIDGE_REVERSE and WALBRIDGE_EXIT_ON_ERROR take true/false, 1/0 or yes/no, in any case', () => {
    for (const name of ['WALBRIDGE_REVERSE', 'WALBRIDGE_EXIT_ON_ERROR'] as const) {
      const field = name === 'WALBRIDGE_REVERSE' ? 'reverse' : 'exitOnError';
      for (const yes of ['true', 'TRUE', '1', 'yes', ' Yes ']) assert.equal(loadConfig(env({ [name]: yes }))[field], true, `${name}=${yes}`);
      for (const no of ['false', 'False', '0', 'no']) assert.equal(loadConfig(env({ [name]: no }))[field], false, `${name}=${no}`);
    }
  });

  test('any other value of WALBRIDGE_REVERSE or WALBRIDGE_EXIT_ON_ERROR is refused, naming the variable', () => {
    for (const name of ['WALBRIDGE_REVERSE', 'WALBRIDGE_EXIT_ON_ERROR']) {
      for (const value of ['maybe', 'on', 'off', 'y', '2']) {
        const err = configError(env({ [name]: value }));
        assert.ok(err.message.includes(`${name} must be true or false`), `${name}=${value}: ${err.message}`);
      }
    }
  });

  test('WALBRIDGE_HTTP_TOKEN is taken trimmed', () => {
    assert.equal(loadConfig(env({ WALBRIDGE_HTTP_TOKEN: ' s3cret-token ' })).httpToken, 's3cret-token');
  });

  test('table filters that are not schema.table are named with the offending pattern', () => {
    for (const pattern of ['users', 'public.', '.users', 'public.a.b']) {
      const inc = configError(env({ WALBRIDGE_TABLES: pattern }));
      assert.match(inc.message, /WALBRIDGE_TABLES/);
      assert.ok(inc.message.includes(`"${pattern}"`), inc.message);
      const exc = configError(env({ WALBRIDGE_EXCLUDE_TABLES: `public.ok, ${pattern}` }));
      assert.match(exc.message, /WALBRIDGE_EXCLUDE_TABLES/);
      assert.ok(exc.message.includes(`"${pattern}"`), exc.message);
    }
  });

  test('WALBRIDGE_TABLES set to a list with no table is an error, not "every table"', () => {
    for (const value of [',', ' , ,']) {
      const err = configError(env({ WALBRIDGE_TABLES: value }));
      assert.match(err.message, /WALBRIDGE_TABLES/);
    }
  });

  test('several bad values are reported together in one error', () => {
    const err = configError(
      env({
        SOURCE_DATABASE_URL: supabasePoolerUrl(6543, SOURCE_PASSWORD, 'postgres.ref'),
        PORT: 'abc',
        WALBRIDGE_SLOT: 'Bad-Slot',
        LOG_LEVEL: 'loud',
        WALBRIDGE_TABLES: 'users',
      }),
    );
    for (const name of ['SOURCE_DATABASE_URL', 'PORT', 'WALBRIDGE_SLOT', 'LOG_LEVEL', 'WALBRIDGE_TABLES']) {
      assert.ok(err.message.includes(name), `${name} missing from:\n${err.message}`);
    }
  });
});

describe('overrides (command-line flags)', () => {
  test('win over the environment', () => {
    const otherSource = urlWithLogin('postgresql://source.example.com:5432/app', 'u', 'pw');
    const c = loadConfig(
      env({ PORT: '9000', WALBRIDGE_SLOT: 'from_env', WALBRIDGE_SCHEMAS: 'public', LOG_LEVEL: 'warn', WALBRIDGE_TABLES: 'public.a' }),
      { port: 9100, slotName: 'from_flag', schemas: ['auth', 'public'], logLevel: 'debug', includeTables: ['auth.users'], sourceUrl: otherSource },
    );
    assert.equal(c.port, 9100);
    assert.equal(c.slotName, 'from_flag');
    assert.deepEqual(c.schemas, ['auth', 'public']);
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.includeTables, ['auth.users']);
    assert.equal(c.sourceUrl, otherSource);
  });

  test('a good override replaces a bad environment value', () => {
    const c = loadConfig(env({ PORT: 'abc', SOURCE_DATABASE_URL: 'not a url' }), {
      port: 8081,
      sourceUrl: urlWithLogin('postgresql://source.example.com/app', 'u', 'pw'),
    });
    assert.equal(c.port, 8081);
  });

  test('a bad override is reported like a bad variable', () => {
    const err = configError(env(), { port: 0 });
    assert.match(err.message, /\bPORT\b/);
  });

  test('--reverse and --exit-on-error win over their variables, even over a bad value', () => {
    for (const value of ['false', 'maybe']) {
      const c = loadConfig(env({ WALBRIDGE_REVERSE: value, WALBRIDGE_EXIT_ON_ERROR: value }), { reverse: true, exitOnError: true });
      assert.equal(c.reverse, true, `WALBRIDGE_REVERSE=${value}`);
      assert.equal(c.exitOnError, true, `WALBRIDGE_EXIT_ON_ERROR=${value}`);
    }
  });
});

describe('the direction a command runs in (loadCommandConfig)', () => {
  test('forward by default: source and target, slot and publication as configured', () => {
    const c = loadCommandConfig(env());
    assert.ok(c);
    assert.equal(c.sourceUrl, SOURCE_URL);
    assert.equal(c.targetUrl, TARGET_URL);
    assert.equal(c.slotName, 'walbridge');
    assert.equal(c.reverse, false);
  });

  test('WALBRIDGE_REVERSE=true, or the --reverse flag: the way back, from the target with the _reverse slot', () => {
    for (const c of [loadCommandConfig(env({ WALBRIDGE_REVERSE: 'true' })), loadCommandConfig(env(), { overrides: { reverse: true } })]) {
      assert.ok(c);
      assert.equal(c.sourceUrl, TARGET_URL);
      assert.equal(c.targetUrl, SOURCE_URL);
      assert.equal(c.slotName, 'walbridge_reverse');
      assert.equal(c.publicationName, 'walbridge_reverse');
      assert.equal(c.reverse, true);
    }
  });

  test('a command that decides by its own flag ignores WALBRIDGE_REVERSE', () => {
    const c = loadCommandConfig(env({ WALBRIDGE_REVERSE: 'true' }), { reverse: false });
    assert.ok(c);
    assert.equal(c.sourceUrl, SOURCE_URL);
    assert.equal(c.slotName, 'walbridge');
    assert.equal(c.reverse, false);
  });
});

describe('every command refuses a bad configuration the same way', () => {
  const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../dist/cli.js');
  // Hosts that do not resolve: a command that tried to connect would report that instead.
  const bad = {
    PATH: process.env.PATH ?? '',
    SOURCE_DATABASE_URL: urlWithLogin('postgresql://source.invalid:5432/app', 'u', SOURCE_PASSWORD),
    TARGET_DATABASE_URL: urlWithLogin('postgresql://target.invalid:5432/app', 'u', TARGET_PASSWORD),
    WALBRIDGE_EXIT_ON_ERROR: 'maybe',
  };
  for (const args of [['run'], ['preflight'], ['status'], ['verify'], ['cutover'], ['teardown'], ['status', '--reverse']]) {
    test(`walbridge ${args.join(' ')}: exit 2, the variable named and the fix, on stderr`, () => {
      const r = spawnSync(process.execPath, [CLI, ...args], { env: bad, encoding: 'utf8', timeout: 20_000 });
      assert.equal(r.status, 2, r.stderr);
      assert.match(r.stderr, /^invalid configuration:\n {2}- WALBRIDGE_EXIT_ON_ERROR must be true or false\n/);
      assert.match(r.stderr, /Fix the variables above/);
      assert.doesNotMatch(r.stderr, /\.invalid/, 'no connection was attempted');
    });
  }
});

describe('secrets', () => {
  const pooler = (pw: string) => supabasePoolerUrl(6543, pw, 'postgres.ref');
  const cases: Array<[string, Env]> = [
    ['pooler source', env({ SOURCE_DATABASE_URL: pooler(SOURCE_PASSWORD) })],
    ['pooler target', env({ TARGET_DATABASE_URL: pooler(TARGET_PASSWORD) })],
    [
      'same database',
      {
        SOURCE_DATABASE_URL: urlWithLogin('postgresql://h/app', 'a', SOURCE_PASSWORD),
        TARGET_DATABASE_URL: urlWithLogin('postgresql://h/app', 'b', TARGET_PASSWORD),
      },
    ],
    ['bad PORT with good URLs', env({ PORT: 'abc' })],
    ['another scheme', env({ SOURCE_DATABASE_URL: urlWithLogin('mysql://h/db', 'u', SOURCE_PASSWORD) })],
    ['missing scheme', env({ SOURCE_DATABASE_URL: `postgres:${enc(SOURCE_PASSWORD)}@h:5432/db` })],
    ['no scheme at all', env({ TARGET_DATABASE_URL: `railway:${enc(TARGET_PASSWORD)}@h:5432/db` })],
    ['missing slashes', env({ SOURCE_DATABASE_URL: `postgresql:/postgres:${enc(SOURCE_PASSWORD)}@h/db` })],
    ['not a URL', env({ SOURCE_DATABASE_URL: loginAsGiven('postgres://', 'postgres', enc(SOURCE_PASSWORD), '[bad-host/db') })],
    ['port not a number', env({ SOURCE_DATABASE_URL: loginAsGiven('postgres://', 'postgres', enc(SOURCE_PASSWORD), 'h:pgport/db') })],
    ['raw (unencoded) password', env({ TARGET_DATABASE_URL: loginAsGiven('postgresql://', 'u', TARGET_PASSWORD, 'h:99999/db') })],
    [
      'everything wrong at once',
      {
        SOURCE_DATABASE_URL: pooler(SOURCE_PASSWORD),
        TARGET_DATABASE_URL: urlWithLogin('http://h/db', 'u', TARGET_PASSWORD),
        PORT: '0',
        WALBRIDGE_SLOT: 'X',
      },
    ],
  ];

  for (const [name, e] of cases) {
    test(`no error shows either password: ${name}`, () => {
      const err = configError(e);
      const shown = everythingShown(err);
      for (const secret of [...secretForms(SOURCE_PASSWORD), ...secretForms(TARGET_PASSWORD)]) {
        assert.ok(!shown.includes(secret), `password ${JSON.stringify(secret)} shown in:\n${shown}`);
      }
    });
  }

  test('the error is a WalbridgeError of kind config with a hint', () => {
    const err = configError(env({ PORT: 'abc' }));
    assert.equal(err.name, 'WalbridgeError');
    assert.equal(err.kind, 'config');
    assert.equal(err.transient, false);
    assert.ok(err.hint && err.hint.length > 0);
  });
});

describe('WALBRIDGE_CONVERT', () => {
  test('parsed into conversions by column; --convert (overrides.convert) wins over the variable; the way back inverts them', () => {
    const c = loadConfig(env({ WALBRIDGE_CONVERT: 'public.m.embedding=vector_to_float32le' }));
    assert.deepEqual([...c.conversions.keys()], ['public.m.embedding']);
    assert.equal(c.conversions.get('public.m.embedding')?.spec, 'vector_to_float32le');
    const flag = loadConfig(env({ WALBRIDGE_CONVERT: 'public.m.embedding=vector_to_float32le' }), { convert: 'public.m.body=to_jsonb' });
    assert.deepEqual([...flag.conversions.keys()], ['public.m.body']);
    const back = loadCommandConfig(env({ WALBRIDGE_CONVERT: 'public.m.embedding=vector_to_float32le;public.m.old=drop' }), { reverse: true });
    assert.deepEqual([...(back?.conversions.keys() ?? [])], ['public.m.embedding'], 'a dropped column does not go back');
  });

  test('a bad entry is a configuration error naming the entry and the known conversions, with the other problems', () => {
    const err = configError(env({ WALBRIDGE_CONVERT: 'public.m.embedding=vector_to_float64', PORT: 'abc' }));
    assert.match(err.message, /"public\.m\.embedding=vector_to_float64": unknown conversion "vector_to_float64"/);
    assert.match(err.message, /vector_to_float32le/);
    assert.match(err.message, /PORT/);
    assert.doesNotMatch(err.message, /WALBRIDGE_CONVERT: WALBRIDGE_CONVERT/);
  });
});
