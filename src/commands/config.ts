/**
 * The configuration every command starts from. A command with a bad configuration stops
 * before it connects anywhere: what is wrong and how to fix it go to stderr, and the command
 * exits 2, the status documented as "fix the variables".
 */
import { loadConfig, reverseConfig, type Config, type ConfigOverrides } from '../config.js';
import { describeError } from '../errors.js';

export interface CommandConfigOptions {
  /** Flags, as loadConfig takes them. */
  overrides?: ConfigOverrides;
  /**
   * The direction, when the command decides it by its own --reverse flag. Unset: the
   * configuration's (WALBRIDGE_REVERSE, or run's --reverse). Only `run` leaves it unset, so a
   * service's WALBRIDGE_REVERSE=true never turns a cutover or a teardown round by itself.
   */
  reverse?: boolean;
  /** Called with a bad configuration's error before it is reported on stderr. */
  onError?: (err: unknown) => void;
}

/** loadConfig, turned round for the way back when asked; null after a bad configuration, already reported. */
export function loadCommandConfig(env: Record<string, string | undefined>, opts: CommandConfigOptions = {}): Config | null {
  let config: Config;
  try {
    config = loadConfig(env, opts.overrides);
  } catch (err) {
    opts.onError?.(err);
    const d = describeError(err);
    process.stderr.write(`${d.message}\n${d.hint ? `${d.hint}\n` : ''}`);
    return null;
  }
  config = { ...config, reverse: opts.reverse ?? config.reverse };
  return config.reverse ? reverseConfig(config) : config;
}
