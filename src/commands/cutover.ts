/**
 * `walbridge cutover`: finish the migration safely, then say what to change next.
 */
import { loadCommandConfig } from './config.js';
import { describeError } from '../errors.js';
import { describeEndpoint } from '../pg/connect.js';
import { runCutover, type CutoverOptions } from '../cutover/cutover.js';

export interface CutoverCommandOptions extends Omit<CutoverOptions, 'say' | 'rollingBack'> {
  reverse: boolean;
  json: boolean;
}

export async function cutoverCommand(env: NodeJS.ProcessEnv, opts: CutoverCommandOptions): Promise<number> {
  // Rolling back is a cutover of the way back: Railway → Supabase.
  const config = loadCommandConfig(env, { reverse: opts.reverse });
  if (!config) return 2;
  const say = (line: string) => {
    if (!opts.json) process.stdout.write(`${line}\n`);
  };
  say(`walbridge cutover: ${describeEndpoint(config.sourceUrl)} → ${describeEndpoint(config.targetUrl)}`);
  try {
    const r = await runCutover(config, { ...opts, prepareReverse: opts.prepareReverse && !opts.reverse, rollingBack: opts.reverse, say });
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    if (opts.prepare || opts.cancel) return 0;
    const newHome = opts.reverse ? 'SOURCE_DATABASE_URL (the original database)' : 'TARGET_DATABASE_URL';
    say('');
    say(`Cutover done at ${r.lsn}.`);
    say('');
    say('Next:');
    say(
      r.fence
        ? `  1. Point the app's DATABASE_URL at the database of ${newHome}. Until then its writes to the migrated\n` +
            "     tables fail with a message naming the move (reads still work); walbridge status shows the fence."
        : `  1. Point the app's DATABASE_URL at the database of ${newHome} and start the app.`,
    );
    if (!opts.reverse) {
      if (r.reverse && 'slot' in r.reverse) {
        say('  2. Rollback window: keep the old database as a warm fallback by running, with the same variables,');
        say('       walbridge run --reverse');
        say('     It replicates every write the app makes on the new database back to the old one, from this exact point.');
        say('     To roll back: run "walbridge cutover --reverse" (the app keeps running: it fences the new database,');
        say('     then lifts the old one\'s fence), and point DATABASE_URL back.');
        say('     When you no longer need the way back: walbridge teardown --target (removes the reverse slot too).');
      } else {
        say('  2. No rollback window: the new database does not allow logical replication, so writes made there');
        say('     cannot flow back. To roll back you would migrate again in the other direction.');
      }
    }
    if (!r.sourceCleaned) say('  3. Remove walbridge\'s slot and publication from the source when done: walbridge teardown');
    return 0;
  } catch (err) {
    const d = describeError(err);
    process.stderr.write(`cutover stopped: ${d.message}\n${d.hint ? `fix: ${d.hint}\n` : ''}`);
    return 1;
  }
}
