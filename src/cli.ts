#!/usr/bin/env node
/**
 * The `walbridge` command. Connection strings come from the environment only
 * (SOURCE_DATABASE_URL, TARGET_DATABASE_URL): never from flags, which end up in shell
 * history and process listings.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { cutoverCommand } from './commands/cutover.js';
import { preflightCommand } from './commands/preflight.js';
import { runCommand } from './commands/run.js';
import { schemaCommand } from './commands/schema.js';
import { statusCommand } from './commands/status.js';
import { tablesChangeCommand, tablesListCommand } from './commands/tables.js';
import { teardownCommand } from './commands/teardown.js';
import { verifyCommand } from './commands/verify.js';
import type { ConfigOverrides } from './config.js';

const list = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

function positiveInt(v: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError('expected a positive whole number');
  return Number(v);
}

/** `--convert`, on every command that reads or writes the migrated tables: WALBRIDGE_CONVERT's value. */
const convertOption = () =>
  new Option('--convert <list>', 'column conversions, schema.table.column=CONVERSION separated by ; (overrides WALBRIDGE_CONVERT; see docs/conversions.md)');

/** The environment a command runs with: a flag given on the command line wins over its variable. */
const envWith = (opts: { convert?: string }): NodeJS.ProcessEnv => (opts.convert === undefined ? process.env : { ...process.env, WALBRIDGE_CONVERT: opts.convert });

const program = new Command();
program
  .name('walbridge')
  .description(
    'Move a live Postgres database (e.g. Supabase) to another Postgres (e.g. Railway) with no downtime:\n' +
      'a consistent copy, then exactly-once logical replication until cutover.',
  )
  .addHelpText(
    'after',
    `
Environment:
  SOURCE_DATABASE_URL       direct connection URL of the database to migrate from (required)
  TARGET_DATABASE_URL       URL of the database to migrate to (required; falls back to DATABASE_URL)
  WALBRIDGE_SCHEMAS         comma list of schemas to migrate (default: public)
  WALBRIDGE_TABLES          only these schema.table names (globs with * allowed)
  WALBRIDGE_EXCLUDE_TABLES  leave these schema.table names out (globs allowed)
  WALBRIDGE_SLOT            replication slot name on the source (default: walbridge)
  WALBRIDGE_PUBLICATION     publication name on the source (default: walbridge)
  WALBRIDGE_COPY_JOBS       tables copied at once (default: 4)
  WALBRIDGE_COPY_MAX_MBPS   cap each copy job at this many MB/s (default: unlimited)
  WALBRIDGE_COPY_SPLIT_MB   copy a table of twice this size in parts (block ranges, partitions) at once (default: 16)
  WALBRIDGE_COPY_DEFER_INDEXES  drop a target table's plain secondary indexes during its copy, build them after (default: true)
  WALBRIDGE_COPY_BINARY     COPY in binary format where the column types allow it: built-in, enum, domain (default: true; false: always text)
  WALBRIDGE_TOAST_LZ4       compress the values walbridge TOASTs on the target with lz4 where the target has it (default: true; false: the server's default)
  WALBRIDGE_APPLY_BATCH_CHANGES, WALBRIDGE_APPLY_BATCH_MS   apply batch size (default: 5000 changes, 200 ms)
  WALBRIDGE_CONVERT         column conversions, e.g. public.mirt_memories.embedding=vector_to_float32le (; between columns; docs/conversions.md)
  WALBRIDGE_EXIT_ON_ERROR   exit on a permanent error instead of waiting in phase "error" (default: false; same as run --exit-on-error)
  WALBRIDGE_GROUP           a table group of its own: slot, publication and state walbridge_<group> (docs/scale.md)
  WALBRIDGE_FOLLOW_NEW_TABLES  add tables created on the source in WALBRIDGE_SCHEMAS by themselves once the target has them (default: false)
  WALBRIDGE_REVERSE         after cutover: run the way back (default: false; same as run --reverse; the other commands take --reverse)
  WALBRIDGE_HTTP_TOKEN      require this bearer token on every endpoint but /healthz
  PORT                      HTTP port for the status page, /metrics, /healthz, /readyz (default: 8080)
  LOG_LEVEL                 fatal, error, warn, info, debug, trace (default: info)
  SUPABASE_URL, SUPABASE_SERVICE_ROLE_KEY   for verify --via-api`,
  );

program
  .command('run')
  .description('run the migration daemon: copy, then stream changes until stopped (same as node dist/daemon.js)')
  .addOption(new Option('--schemas <list>', 'schemas to migrate (overrides WALBRIDGE_SCHEMAS)').argParser(list))
  .addOption(new Option('--tables <list>', 'only these schema.table globs (overrides WALBRIDGE_TABLES)').argParser(list))
  .addOption(new Option('--exclude-tables <list>', 'leave out these schema.table globs').argParser(list))
  .option('--slot <name>', 'replication slot name (overrides WALBRIDGE_SLOT)')
  .option('--publication <name>', 'publication name (overrides WALBRIDGE_PUBLICATION)')
  .addOption(new Option('--port <port>', 'HTTP port (overrides PORT)').argParser(positiveInt))
  .addOption(new Option('--copy-jobs <n>', 'tables copied at once').argParser(positiveInt))
  .option('--log-level <level>', 'log level (overrides LOG_LEVEL)')
  .option('--exit-on-error', 'exit with status 1 on a permanent error instead of waiting in phase "error"')
  .option('--reverse', 'after cutover: replicate the new database back to the old one (the rollback window; or WALBRIDGE_REVERSE=true)')
  .addOption(convertOption())
  .action(async (opts: Record<string, unknown>) => {
    const overrides: ConfigOverrides = {};
    if (opts.schemas) overrides.schemas = opts.schemas as string[];
    if (opts.tables) overrides.includeTables = opts.tables as string[];
    if (opts.excludeTables) overrides.excludeTables = opts.excludeTables as string[];
    if (opts.slot) overrides.slotName = opts.slot as string;
    if (opts.publication) overrides.publicationName = opts.publication as string;
    if (opts.port) overrides.port = opts.port as number;
    if (opts.copyJobs) overrides.copyJobs = opts.copyJobs as number;
    if (opts.logLevel) overrides.logLevel = opts.logLevel as ConfigOverrides['logLevel'];
    // Without the flag, WALBRIDGE_EXIT_ON_ERROR and WALBRIDGE_REVERSE decide.
    if (opts.exitOnError) overrides.exitOnError = true;
    if (opts.reverse) overrides.reverse = true;
    const code = await runCommand(envWith(opts as { convert?: string }), { overrides });
    process.exit(code);
  });

program
  .command('schema')
  .description("make on the target what the selected tables need, from the source's catalogs, and nothing of Supabase's platform")
  .option('--dry-run', 'print the SQL in the order it would run (a psql script), and what is left out; change nothing')
  .option('--json', 'print the plan as JSON: steps, present, leftOut, problems')
  .addOption(
    new Option('--policies <choice>', "row-level security policies that name Supabase's API roles or call auth.uid() & co.")
      .choices(['keep', 'drop'])
      .default('keep'),
  )
  .option('--reverse', 'after cutover: make on the old database the tables the app created on the new one, so the way back can carry them')
  .addHelpText(
    'after',
    `
Makes, for the selected tables (WALBRIDGE_SCHEMAS, WALBRIDGE_TABLES, WALBRIDGE_EXCLUDE_TABLES): schemas,
extensions (in the same schema as on the source), collations, enums, domains and composite types, sequences, tables
with their columns, defaults, identity and generated columns, partitions, constraints, indexes, foreign
keys among them, the app's functions and triggers they use, row-level security and policies, the views
of the selected schemas that read those tables (each after the views it reads), comments. Materialized
views are made empty, with their indexes: cutover fills them. Views that need what is not made are
listed as left out with what they lack.
All in one transaction; what the target has already is left as it is (run it twice: nothing changes),
and a table that exists but differs stops it, never altered.

Never made: Supabase's reserved roles, grants, default privileges, event triggers, publications, its
platform schemas (auth, storage, realtime, …). What needs them is listed with the choice it leaves:
foreign keys to auth.users, triggers on auth tables, Database Webhooks, defaults calling the platform.

--policies keep (default): policies stay as they are; the API roles (anon, authenticated, service_role)
  are created NOLOGIN, and the auth.uid(), auth.jwt(), auth.role() or auth.email() they call as the
  source defines them (they read the JWT claims PostgREST sets). No grants: grant what your API serves.
--policies drop: such policies are left out (listed); row-level security stays enabled.

Exit status: 0 done or nothing to do, 1 a problem (nothing written), 2 bad configuration or connection.`,
  )
  .addOption(convertOption())
  .action(async (opts: { dryRun?: boolean; json?: boolean; policies: 'keep' | 'drop'; reverse?: boolean; convert?: string }) => {
    process.exit(await schemaCommand(envWith(opts), { dryRun: opts.dryRun === true, json: opts.json === true, policies: opts.policies, reverse: opts.reverse === true }));
  });

program
  .command('preflight')
  .description('check everything that would make the migration fail, before anything is written (read-only)')
  .option('--json', 'print the checks as JSON')
  .addOption(new Option('--sample-seconds <n>', "how long to watch the source's WAL rate").argParser(positiveInt).default(2))
  .addHelpText('after', '\nEach check prints PASS, WARN or FAIL, with the fix for the last two. Exit status 1 if any check fails.')
  .addOption(convertOption())
  .action(async (opts: { json?: boolean; sampleSeconds: number; convert?: string }) => {
    process.exit(await preflightCommand(envWith(opts), { json: opts.json === true, sampleSeconds: opts.sampleSeconds }));
  });

program
  .command('status')
  .description("show the migration's progress: phase, per-table copy, lag, WAL held on the source, last error")
  .option('--json', 'print the report as JSON (the same as the daemon\'s /status.json)')
  .option('--reverse', 'after cutover: the way back (run --reverse) instead of the migration')
  .addHelpText('after', '\nReads the state walbridge records on the target, so it works from any machine with the same\nSOURCE_DATABASE_URL and TARGET_DATABASE_URL while the daemon runs elsewhere.')
  .addOption(convertOption())
  .action(async (opts: { json?: boolean; reverse?: boolean; convert?: string }) => {
    process.exit(await statusCommand(envWith(opts), { json: opts.json === true, reverse: opts.reverse === true }));
  });

const collect = (v: string, prev: string[]) => [...prev, ...list(v)];

const reverseTablesOption = () => new Option('--reverse', "after cutover: the way back's tables (walbridge run --reverse) instead of the migration's");

const tables = program
  .command('tables')
  .description("list the migration's tables and where each stands; add or remove tables while it streams")
  .option('--json', 'print the list as JSON (tables, new tables on the source, the DDL they need)')
  .addOption(reverseTablesOption())
  .addHelpText(
    'after',
    `
Lists every table of the migration: streaming, being copied (its changes held meanwhile), to be added,
removed…, and the tables of WALBRIDGE_SCHEMAS created on the source since, with the SQL that makes
them on the target.

  walbridge tables add 'public.invoices*'    add tables to the running migration
  walbridge tables remove public.audit_log   stop migrating a table (its rows stay on the target)
  walbridge resync public.orders             empty a target table and copy it again

The daemon carries each request out while the other tables keep streaming: an added table is
published, copied under a snapshot of its own, and its changes made meanwhile applied after; a
restart (even kill -9) resumes where it stopped. Starting the daemon with another WALBRIDGE_TABLES
asks for the same changes. WALBRIDGE_FOLLOW_NEW_TABLES=true adds new tables by itself once they exist
on the target.

After cutover, with --reverse, the same for the way back (walbridge run --reverse): tables the app
created on the new database are listed, and "walbridge schema --reverse" then
"walbridge tables add --reverse <table>" carry them back, so a rollback leaves no rows behind.`,
  )
  .action(async (opts: { json?: boolean; reverse?: boolean }) => {
    process.exit(await tablesListCommand(process.env, { json: opts.json === true, reverse: opts.reverse === true }));
  });

/** `tables add|remove`'s options: `tables` itself takes --reverse too, and commander gives it to the parent wherever it stands. */
const changeOptions = (cmd: Command) => cmd.optsWithGlobals<{ wait?: boolean; reverse?: boolean; convert?: string }>();

const waitOption = () => new Option('--wait', 'follow the request until it is carried out (Ctrl-C stops following, not the request)');

tables
  .command('add')
  .description('add tables to the running migration: published, copied under a fresh snapshot, then streamed')
  .argument('<glob...>', 'schema.table names, * allowed')
  .addOption(waitOption())
  .addOption(reverseTablesOption())
  .addOption(convertOption())
  .addHelpText('after', '\nChecked first (nothing is written otherwise): the table exists on the target with matching columns and is\nempty there, and has a primary key or replica identity on the source. Exit status: 0 asked (or done with\n--wait), 1 a problem, 2 bad configuration or connection.')
  .action(async (globs: string[], _opts: unknown, cmd: Command) => {
    const opts = changeOptions(cmd);
    process.exit(await tablesChangeCommand(envWith(opts), 'add', globs, { wait: opts.wait === true, reverse: opts.reverse === true }));
  });

tables
  .command('remove')
  .description('stop migrating tables: no longer applied nor published; their rows stay on the target')
  .argument('<glob...>', 'schema.table names, * allowed')
  .addOption(waitOption())
  .addOption(reverseTablesOption())
  .action(async (globs: string[], _opts: unknown, cmd: Command) => {
    const opts = changeOptions(cmd);
    process.exit(await tablesChangeCommand(process.env, 'remove', globs, { wait: opts.wait === true, reverse: opts.reverse === true }));
  });

program
  .command('resync')
  .description('copy tables again while the others stream: the target table is emptied and copied under a fresh snapshot')
  .argument('<table...>', 'schema.table names of migrated tables, * allowed')
  .addOption(waitOption())
  .addOption(reverseTablesOption())
  .addOption(convertOption())
  .addHelpText('after', '\nFor a table verify found different, or one rewritten on the source (ALTER ... TYPE). Its changes made during\nthe copy are held and applied after it; the other tables are not touched.')
  .action(async (names: string[], opts: { wait?: boolean; reverse?: boolean; convert?: string }) => {
    process.exit(await tablesChangeCommand(envWith(opts), 'resync', names, { wait: opts.wait === true, reverse: opts.reverse === true }));
  });

program
  .command('verify')
  .description('compare the content of every migrated table, row by row, while the source stays live')
  .option('--table <schema.table>', 'only this table (repeatable)', collect, [] as string[])
  .option('--json', 'print the report as JSON')
  .addOption(new Option('--max-differences <n>', 'differing keys listed per table').argParser(positiveInt).default(20))
  .addOption(new Option('--jobs <n>', 'key ranges compared at once').argParser(positiveInt).default(4))
  .addOption(new Option('--range-rows <n>', 'rows per key range').argParser(positiveInt).default(50_000))
  .option('--via-api', "also count each table through Supabase's REST API (needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY)")
  .option('--reverse', 'after cutover: compare the new database (now written to) with the old one')
  .addHelpText(
    'after',
    '\nEach table is compared in key ranges hashed on both sides; a differing range is narrowed to its rows,\n' +
      'listed as missing on target, extra on target, or changed. Rows that change during the comparison are\n' +
      'compared again. Exit status: 0 equal, 1 different, 2 could not compare.',
  )
  .addOption(convertOption())
  .action(async (opts: { table: string[]; json?: boolean; maxDifferences: number; jobs: number; rangeRows: number; viaApi?: boolean; reverse?: boolean; convert?: string }) => {
    process.exit(
      await verifyCommand(envWith(opts), {
        tables: opts.table,
        json: opts.json === true,
        maxDifferences: opts.maxDifferences,
        jobs: opts.jobs,
        rangeRows: opts.rangeRows,
        viaApi: opts.viaApi === true,
        reverse: opts.reverse === true,
      }),
    );
  });

program
  .command('cutover')
  .description('switch to the new database with no write lost: check the content live, fence the source, apply up to the fence, record')
  .option('--prepare', 'only check the content while the app writes (the slow part), and stop: cutover later checks only what changed since')
  .addOption(new Option('--max-check-age <seconds>', 'reuse a check of the content done this recently (by --prepare or an earlier try)').argParser(positiveInt).default(3600))
  .option('--cancel', 'lift the fence of an interrupted cutover (the source takes writes again) and stop preparing')
  .option('--no-fence', 'do not fence the source: wait for the app to stop writing instead, and verify every table inside the pause')
  .option('--max-lag <bytes>', 'with --no-fence: proceed once the target is at most this far behind, even if the app still writes')
  .addOption(new Option('--quiet-seconds <n>', 'with --no-fence: the app counts as stopped after this long without a change').argParser(positiveInt).default(5))
  .addOption(new Option('--timeout <seconds>', 'give up waiting for the target to catch up and apply the fence (or, with --no-fence, for the app to stop) after this long').argParser(positiveInt).default(600))
  .option('--sequence-margin <n>', 'move every target sequence this far past the source\'s next value', '0')
  .option('--keep-source-slot', "keep walbridge's slot and publication on the source")
  .option('--skip-verify', 'with --no-fence: skip the final content verification')
  .option('--no-reverse-slot', 'do not prepare the rollback window (a slot on the target)')
  .option('--reverse', 'roll back: cut over the way back (target → source), after "walbridge run --reverse"')
  .option('--all-groups', 'cut every table group on the target over together (WALBRIDGE_GROUP): every fence raised before any is recorded; with --cancel, lift every group\'s fence')
  .option('--json', 'print the result as JSON')
  .addHelpText(
    'after',
    '\nFirst, a table of WALBRIDGE_SCHEMAS on the source that the migration does not carry (created since it began,\n' +
      'not excluded) stops it with nothing installed: carry it (walbridge schema, walbridge tables add) or exclude it.\n' +
      'The app keeps writing to the source until the fence. Steps: record the rows walbridge changes; check every\n' +
      "table while the app writes, then the rows changed meanwhile; fill the target's materialized views from the\n" +
      'copied rows; fence the source (from then on every write to a migrated table fails there, whoever writes, with a\n' +
      'message naming the move); wait until the target has applied everything committed before the fence; move the\n' +
      'sequences; check the rows changed since; record the cutover\n' +
      "(a running daemon stops by itself); remove walbridge's slot and publication from the source (the fence stays).\n" +
      'Writes are refused for well under a second here, whatever the size (the output says where the pause went).\n' +
      'Then point the app at the target. Interrupted after the fence, run it again to finish, or --cancel to lift it.',
  )
  .addOption(convertOption())
  .action(
    async (opts: {
      prepare?: boolean;
      maxCheckAge: number;
      cancel?: boolean;
      fence: boolean;
      maxLag?: string;
      quietSeconds: number;
      timeout: number;
      sequenceMargin: string;
      keepSourceSlot?: boolean;
      skipVerify?: boolean;
      reverseSlot: boolean;
      reverse?: boolean;
      json?: boolean;
      allGroups?: boolean;
      convert?: string;
    }) => {
      const maxLag = opts.maxLag === undefined ? null : Number(opts.maxLag);
      if (maxLag !== null && (!Number.isInteger(maxLag) || maxLag < 0)) {
        process.stderr.write('--max-lag takes a number of bytes\n');
        process.exit(2);
      }
      if (!/^\d+$/.test(opts.sequenceMargin)) {
        process.stderr.write('--sequence-margin takes a whole number\n');
        process.exit(2);
      }
      process.exit(
        await cutoverCommand(envWith(opts), {
          fence: opts.fence,
          prepare: opts.prepare === true,
          cancel: opts.cancel === true,
          maxCheckAgeSeconds: opts.maxCheckAge,
          maxLagBytes: maxLag,
          quietSeconds: opts.quietSeconds,
          timeoutSeconds: opts.timeout,
          sequenceMargin: BigInt(opts.sequenceMargin),
          keepSourceSlot: opts.keepSourceSlot === true,
          verify: opts.skipVerify !== true,
          prepareReverse: opts.reverseSlot,
          reverse: opts.reverse === true,
          json: opts.json === true,
          allGroups: opts.allGroups === true,
        }),
      );
    },
  );

program
  .command('teardown')
  .description("remove walbridge's replication slot, publication and partitions' TRUNCATE triggers from the source (run it if you abandon a migration)")
  .option('--target', "also remove walbridge's state (schema walbridge) from the target; your tables stay as they are")
  .option('--force', 'disconnect a walbridge that is still streaming from the slot')
  .option('--reverse', 'remove the way back instead: its slot and publication on the new database (and with --target its state on the old one)')
  .option('--lift-fence', "also lift the cutover's fence from the source: the app may write there again, and nothing carries those writes over")
  .addHelpText(
    'after',
    '\nA slot nobody reads makes the source keep WAL until its disk fills, or until it passes max_slot_wal_keep_size\n' +
      '(SHOW max_slot_wal_keep_size) and the source invalidates the slot. Safe to run twice.\n' +
      "The cutover's fence on the source stays unless --lift-fence: it keeps the app from writing to the old database.",
  )
  .action(async (opts: { target?: boolean; force?: boolean; reverse?: boolean; liftFence?: boolean }) => {
    process.exit(
      await teardownCommand(process.env, { target: opts.target === true, force: opts.force === true, reverse: opts.reverse === true, liftFence: opts.liftFence === true }),
    );
  });

await program.parseAsync(process.argv);
