/**
 * Configuration is a pure function of the environment (and command-line overrides), so it
 * can be tested and so nothing reads `process.env` at module load. Every bad value is
 * reported at once, each with what to set instead. Connection strings are validated but
 * never echoed back.
 */
import { z } from 'zod';
import { parseConversions, type ColumnConversion } from './convert/conversions.js';
import { wayBack } from './convert/way-back.js';
import { describeError, WalbridgeError } from './errors.js';
import { registerSecret } from './redact.js';
import { DEFAULT_STATE_SCHEMA } from './sql/state.js';

export interface Config {
  sourceUrl: string;
  targetUrl: string;
  /** Schemas whose tables are migrated. */
  schemas: string[];
  /** `schema.table` globs; when set, only matching tables are migrated. */
  includeTables: string[] | null;
  /** `schema.table` globs removed from the selection. */
  excludeTables: string[];
  slotName: string;
  publicationName: string;
  port: number;
  logLevel: LogLevel;
  /** Tables copied at the same time during the backfill. */
  copyJobs: number;
  /** Copy rate limit per job (bytes/s), to spare a busy source; null: unlimited. */
  copyMaxBytesPerSecond: number | null;
  /** A table of at least twice this size (with TOAST) is copied in parts (block ranges, partitions) on up to copyJobs sessions. */
  copySplitBytes: number;
  /** Drop a target table's plain secondary indexes while it is copied and build them again after (faster than maintaining them row by row). */
  copyDeferIndexes: boolean;
  /** COPY in binary format for tables whose column types allow it (TablePlan.binaryCopy; false: always text). */
  copyBinary: boolean;
  /** Target sessions compress the values they TOAST with lz4 where the target has it (pg/sessions.ts). */
  toastLz4: boolean;
  /** Target-side apply batching: commit after this many changes or this many ms. */
  applyBatchChanges: number;
  applyBatchMs: number;
  /** When set, every HTTP endpoint but /healthz requires it. */
  httpToken: string | null;
  /** `run` replicates the way back (target → source) after cutover: the rollback window. */
  reverse: boolean;
  /** `run` exits with status 1 on a permanent error instead of waiting in phase "error" and retrying. */
  exitOnError: boolean;
  /** Declared column conversions (WALBRIDGE_CONVERT), by `schema.table.column`. */
  conversions: Map<string, ColumnConversion>;
  /** A table created on the source in a selected schema is added by itself once it exists on the target (tables/). */
  followNewTables: boolean;
  /**
   * The table group this service migrates (WALBRIDGE_GROUP), or null for a migration of its own.
   * Several groups share one source and one target, each with its own slot, publication and state.
   */
  group: string | null;
  /**
   * The schema on the target that holds this walbridge's own state (sql/state.ts): `walbridge`,
   * or `walbridge_<group>` for a table group. The way back keeps it (its state lives in the old source's).
   */
  stateSchema: string;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Overrides from command-line flags; same meaning as the env variables they shadow. */
export type ConfigOverrides = Partial<
  Pick<
    Config,
    | 'sourceUrl'
    | 'targetUrl'
    | 'schemas'
    | 'includeTables'
    | 'excludeTables'
    | 'slotName'
    | 'publicationName'
    | 'port'
    | 'logLevel'
    | 'copyJobs'
    | 'reverse'
    | 'exitOnError'
  >
> & {
  /** WALBRIDGE_CONVERT's text (`--convert`). */
  convert?: string;
};

const SUPABASE_POOLER_HOST = /\.pooler\.supabase\.com$/i;

function postgresUrl(varName: string) {
  return z.string().superRefine((value, ctx) => {
    let u: URL;
    try {
      u = new URL(value);
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: `${varName} is not a URL. Set it to postgresql://USER:PASSWORD@HOST:5432/DATABASE`,
      });
      return;
    }
    if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
      ctx.addIssue({
        code: 'custom',
        message: `${varName} must start with postgresql:// (got ${u.protocol}//)`,
      });
      return;
    }
    if (!u.hostname) {
      ctx.addIssue({ code: 'custom', message: `${varName} has no host name` });
    }
    if (SUPABASE_POOLER_HOST.test(u.hostname) || (u.hostname.endsWith('supabase.com') && u.port === '6543')) {
      ctx.addIssue({
        code: 'custom',
        message:
          `${varName} points at Supabase's connection pooler (${u.hostname}:${u.port || '5432'}), which does not carry ` +
          'logical replication. Use the direct connection instead: Supabase dashboard → Connect → "Direct connection", ' +
          'host db.<project-ref>.supabase.co, port 5432, user postgres.',
      });
    }
  });
}

const listOf = (s: string | undefined): string[] =>
  (s ?? '')
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);

const SLOT_NAME = /^[a-z0-9_]{1,63}$/;

/** true/false (also 1/0, yes/no), with a default for an unset variable. */
function booleanSetting(name: string, fallback: boolean) {
  return z
    .string()
    .default(String(fallback))
    .refine((s) => /^(true|false|1|0|yes|no)$/i.test(s), { message: `${name} must be true or false` })
    .transform((s) => /^(true|1|yes)$/i.test(s));
}

const envSchema = z.object({
  SOURCE_DATABASE_URL: z
    .string({ error: 'SOURCE_DATABASE_URL is required: the direct connection URL of the database to migrate from' })
    .min(1, 'SOURCE_DATABASE_URL is empty: set it to the direct connection URL of the database to migrate from')
    .pipe(postgresUrl('SOURCE_DATABASE_URL')),
  TARGET_DATABASE_URL: z
    .string({ error: 'TARGET_DATABASE_URL (or DATABASE_URL) is required: the URL of the database to migrate to' })
    .min(1, 'TARGET_DATABASE_URL is empty: set it to the URL of the database to migrate to')
    .pipe(postgresUrl('TARGET_DATABASE_URL')),
  WALBRIDGE_SCHEMAS: z.string().default('public'),
  WALBRIDGE_TABLES: z.string().optional(),
  WALBRIDGE_EXCLUDE_TABLES: z.string().optional(),
  WALBRIDGE_GROUP: z
    .string()
    .optional()
    .refine((s) => s === undefined || (GROUP_NAME.test(s) && s !== 'fence'), {
      message: 'WALBRIDGE_GROUP must be 1-40 characters of lower-case letters, digits and underscores, starting with a letter (and not "fence")',
    }),
  WALBRIDGE_SLOT: z
    .string()
    .optional()
    .refine((s) => s === undefined || SLOT_NAME.test(s), {
      message: 'WALBRIDGE_SLOT must be 1-63 characters of lower-case letters, digits and underscores (a replication slot name)',
    }),
  WALBRIDGE_PUBLICATION: z
    .string()
    .optional()
    .refine((s) => s === undefined || s.length > 0 && Buffer.byteLength(s) <= 63 && !s.includes('\0'), {
      message: 'WALBRIDGE_PUBLICATION must be a name of 1-63 bytes',
    }),
  PORT: z
    .string()
    .default('8080')
    .refine((s) => /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 65535, {
      message: 'PORT must be a whole number from 1 to 65535',
    })
    .transform(Number),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
  WALBRIDGE_COPY_JOBS: z
    .string()
    .default('4')
    .refine((s) => /^\d+$/.test(s) && Number(s) >= 1 && Number(s) <= 64, {
      message: 'WALBRIDGE_COPY_JOBS must be a whole number from 1 to 64',
    })
    .transform(Number),
  WALBRIDGE_COPY_MAX_MBPS: z
    .string()
    .optional()
    .refine((s) => s === undefined || (/^\d+(\.\d+)?$/.test(s) && Number(s) > 0), {
      message: 'WALBRIDGE_COPY_MAX_MBPS must be a positive number of megabytes per second (per copy job)',
    }),
  WALBRIDGE_COPY_SPLIT_MB: z
    .string()
    .default('16')
    .refine((s) => /^\d+(\.\d+)?$/.test(s) && Number(s) > 0, {
      message: 'WALBRIDGE_COPY_SPLIT_MB must be a positive number of megabytes',
    }),
  WALBRIDGE_COPY_DEFER_INDEXES: booleanSetting('WALBRIDGE_COPY_DEFER_INDEXES', true),
  WALBRIDGE_COPY_BINARY: booleanSetting('WALBRIDGE_COPY_BINARY', true),
  WALBRIDGE_TOAST_LZ4: booleanSetting('WALBRIDGE_TOAST_LZ4', true),
  WALBRIDGE_APPLY_BATCH_CHANGES: z
    .string()
    .default('5000')
    .refine((s) => /^\d+$/.test(s) && Number(s) >= 1, { message: 'WALBRIDGE_APPLY_BATCH_CHANGES must be a positive whole number' })
    .transform(Number),
  WALBRIDGE_APPLY_BATCH_MS: z
    .string()
    .default('200')
    .refine((s) => /^\d+$/.test(s) && Number(s) >= 1, { message: 'WALBRIDGE_APPLY_BATCH_MS must be a positive whole number' })
    .transform(Number),
  WALBRIDGE_HTTP_TOKEN: z.string().optional(),
  WALBRIDGE_REVERSE: booleanSetting('WALBRIDGE_REVERSE', false),
  WALBRIDGE_EXIT_ON_ERROR: booleanSetting('WALBRIDGE_EXIT_ON_ERROR', false),
  WALBRIDGE_FOLLOW_NEW_TABLES: booleanSetting('WALBRIDGE_FOLLOW_NEW_TABLES', false),
});

/** `schema.table` with optional `*` globs in either part. */
const TABLE_PATTERN = /^[^.]+\.[^.]+$/;
const GROUP_NAME = /^[a-z][a-z0-9_]{0,39}$/;

/** walbridge's name for what a migration owns (slot, publication, state schema): its group's, or the default. */
function ownName(group: string | null): string {
  return group === null ? DEFAULT_STATE_SCHEMA : `${DEFAULT_STATE_SCHEMA}_${group}`;
}

/** The table group whose state a schema holds (ownName's inverse); null for the migration without a group. */
export function groupOfStateSchema(stateSchema: string): string | null {
  return stateSchema === DEFAULT_STATE_SCHEMA ? null : stateSchema.slice(DEFAULT_STATE_SCHEMA.length + 1);
}

export function loadConfig(env: Record<string, string | undefined>, overrides: ConfigOverrides = {}): Config {
  /** A flag's value as the variable it shadows would spell it, else the variable (empty counts as unset). */
  const flagOrEnv = (flag: string | number | boolean | undefined, name: string) =>
    flag !== undefined ? String(flag) : emptyToUndefined(env[name]);
  const input = {
    ...env,
    SOURCE_DATABASE_URL: overrides.sourceUrl ?? emptyToUndefined(env.SOURCE_DATABASE_URL),
    TARGET_DATABASE_URL:
      overrides.targetUrl ?? emptyToUndefined(env.TARGET_DATABASE_URL) ?? emptyToUndefined(env.DATABASE_URL),
    WALBRIDGE_GROUP: emptyToUndefined(env.WALBRIDGE_GROUP),
    WALBRIDGE_SLOT: flagOrEnv(overrides.slotName, 'WALBRIDGE_SLOT'),
    WALBRIDGE_PUBLICATION: flagOrEnv(overrides.publicationName, 'WALBRIDGE_PUBLICATION'),
    PORT: flagOrEnv(overrides.port, 'PORT'),
    LOG_LEVEL: flagOrEnv(overrides.logLevel, 'LOG_LEVEL'),
    WALBRIDGE_COPY_JOBS: flagOrEnv(overrides.copyJobs, 'WALBRIDGE_COPY_JOBS'),
    WALBRIDGE_SCHEMAS: flagOrEnv(overrides.schemas?.join(','), 'WALBRIDGE_SCHEMAS'),
    WALBRIDGE_COPY_MAX_MBPS: emptyToUndefined(env.WALBRIDGE_COPY_MAX_MBPS),
    WALBRIDGE_COPY_SPLIT_MB: emptyToUndefined(env.WALBRIDGE_COPY_SPLIT_MB),
    WALBRIDGE_COPY_DEFER_INDEXES: emptyToUndefined(env.WALBRIDGE_COPY_DEFER_INDEXES),
    WALBRIDGE_COPY_BINARY: emptyToUndefined(env.WALBRIDGE_COPY_BINARY),
    WALBRIDGE_TOAST_LZ4: emptyToUndefined(env.WALBRIDGE_TOAST_LZ4),
    WALBRIDGE_HTTP_TOKEN: emptyToUndefined(env.WALBRIDGE_HTTP_TOKEN),
    WALBRIDGE_REVERSE: flagOrEnv(overrides.reverse, 'WALBRIDGE_REVERSE'),
    WALBRIDGE_EXIT_ON_ERROR: flagOrEnv(overrides.exitOnError, 'WALBRIDGE_EXIT_ON_ERROR'),
    WALBRIDGE_FOLLOW_NEW_TABLES: emptyToUndefined(env.WALBRIDGE_FOLLOW_NEW_TABLES),
  };
  const parsed = envSchema.safeParse(input);
  const problems: string[] = [];
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(issue.message);
  }

  const includeTables = overrides.includeTables ?? (env.WALBRIDGE_TABLES ? listOf(env.WALBRIDGE_TABLES) : null);
  const excludeTables = overrides.excludeTables ?? listOf(env.WALBRIDGE_EXCLUDE_TABLES);
  for (const [name, list] of [
    ['WALBRIDGE_TABLES', includeTables ?? []],
    ['WALBRIDGE_EXCLUDE_TABLES', excludeTables],
  ] as const) {
    for (const p of list) {
      if (!TABLE_PATTERN.test(p)) {
        problems.push(`${name}: "${p}" is not schema.table (globs with * are allowed, e.g. public.mirt_*)`);
      }
    }
  }
  let conversions = new Map<string, ColumnConversion>();
  try {
    conversions = parseConversions(overrides.convert ?? emptyToUndefined(env.WALBRIDGE_CONVERT));
  } catch (err) {
    const d = describeError(err);
    // The message names the variable and the entry already.
    problems.push(`${d.message}${d.hint ? ` (${d.hint})` : ''}`);
  }
  if (includeTables !== null && includeTables.length === 0) {
    problems.push('WALBRIDGE_TABLES is set but lists no table; unset it to migrate every table of WALBRIDGE_SCHEMAS');
  }

  if (!parsed.success || problems.length > 0) {
    throw new WalbridgeError('config', `invalid configuration:\n  - ${problems.join('\n  - ')}`, {
      hint: 'Fix the variables above (on Railway: the service\'s Variables tab) and start again.',
    });
  }
  const v = parsed.data;
  const schemas = listOf(v.WALBRIDGE_SCHEMAS);
  if (schemas.length === 0) {
    throw new WalbridgeError('config', 'invalid configuration:\n  - WALBRIDGE_SCHEMAS lists no schema', {
      hint: 'Set WALBRIDGE_SCHEMAS to a comma list such as public,auth, or unset it for public.',
    });
  }
  if (sameDatabase(v.SOURCE_DATABASE_URL, v.TARGET_DATABASE_URL)) {
    throw new WalbridgeError(
      'config',
      'invalid configuration:\n  - SOURCE_DATABASE_URL and TARGET_DATABASE_URL name the same database',
      { hint: 'Point TARGET_DATABASE_URL at the new database (for example Railway\'s DATABASE_URL).' },
    );
  }
  for (const url of [v.SOURCE_DATABASE_URL, v.TARGET_DATABASE_URL]) registerSecret(passwordOf(url));
  const httpToken = v.WALBRIDGE_HTTP_TOKEN ?? null;
  registerSecret(httpToken);

  const group = v.WALBRIDGE_GROUP ?? null;
  return {
    sourceUrl: v.SOURCE_DATABASE_URL,
    targetUrl: v.TARGET_DATABASE_URL,
    schemas,
    includeTables,
    excludeTables,
    // A table group's own names, unless set: walbridge_<group> for its slot, publication and state.
    slotName: v.WALBRIDGE_SLOT ?? ownName(group),
    publicationName: v.WALBRIDGE_PUBLICATION ?? ownName(group),
    group,
    port: v.PORT,
    logLevel: v.LOG_LEVEL,
    copyJobs: v.WALBRIDGE_COPY_JOBS,
    copyMaxBytesPerSecond: v.WALBRIDGE_COPY_MAX_MBPS === undefined ? null : Math.round(Number(v.WALBRIDGE_COPY_MAX_MBPS) * 1024 * 1024),
    copySplitBytes: Math.round(Number(v.WALBRIDGE_COPY_SPLIT_MB) * 1024 * 1024),
    copyDeferIndexes: v.WALBRIDGE_COPY_DEFER_INDEXES,
    copyBinary: v.WALBRIDGE_COPY_BINARY,
    toastLz4: v.WALBRIDGE_TOAST_LZ4,
    applyBatchChanges: v.WALBRIDGE_APPLY_BATCH_CHANGES,
    applyBatchMs: v.WALBRIDGE_APPLY_BATCH_MS,
    httpToken,
    reverse: v.WALBRIDGE_REVERSE,
    exitOnError: v.WALBRIDGE_EXIT_ON_ERROR,
    conversions,
    followNewTables: v.WALBRIDGE_FOLLOW_NEW_TABLES,
    stateSchema: ownName(group),
  };
}

function emptyToUndefined(s: string | undefined): string | undefined {
  return s === undefined || s.trim() === '' ? undefined : s.trim();
}

function passwordOf(url: string): string | undefined {
  try {
    const p = new URL(url).password;
    return p ? decodeURIComponent(p) : undefined;
  } catch {
    return undefined;
  }
}

/** Same host, port and database name: a cheap early check; the pipeline also compares system identifiers. */
function sameDatabase(a: string, b: string): boolean {
  try {
    const ua = new URL(a);
    const ub = new URL(b);
    const db = (u: URL) => decodeURIComponent(u.pathname.replace(/^\//, '')) || decodeURIComponent(u.username) || 'postgres';
    return (
      ua.hostname.toLowerCase() === ub.hostname.toLowerCase() && (ua.port || '5432') === (ub.port || '5432') && db(ua) === db(ub)
    );
  } catch {
    return false;
  }
}

/**
 * The configuration of the way back, for the rollback window after cutover: the target
 * becomes the source, and the slot and publication prepared by cutover on it are used.
 */
export function reverseConfig(c: Config): Config {
  return {
    ...c,
    sourceUrl: c.targetUrl,
    targetUrl: c.sourceUrl,
    slotName: `${c.slotName.slice(0, 55)}_reverse`,
    publicationName: `${c.publicationName.slice(0, 55)}_reverse`,
    conversions: wayBack(c.conversions),
  };
}
