/**
 * `walbridge run` / `node dist/daemon.js`: the long-running service.
 */
import { loadConfig, reverseConfig, type ConfigOverrides } from '../config.js';
import { describeError, WalbridgeError } from '../errors.js';
import { Metrics } from '../health/metrics.js';
import { LiveStatus } from '../health/live-status.js';
import { startHealthServer } from '../health/server.js';
import { createLogger } from '../log.js';
import { startMonitor } from '../pipeline/monitor.js';
import { supervise } from '../pipeline/supervise.js';
import { onShutdown } from '../shutdown.js';

export interface RunOptions {
  overrides?: ConfigOverrides;
  exitOnError?: boolean;
  /** The rollback window: replicate the target back to the source, from the cutover point. */
  reverse?: boolean;
}

export async function runCommand(env: NodeJS.ProcessEnv, opts: RunOptions = {}): Promise<number> {
  let config;
  try {
    config = loadConfig(env, opts.overrides);
    if (opts.reverse ?? /^(1|true|yes)$/i.test(env.WALBRIDGE_REVERSE ?? '')) config = reverseConfig(config);
  } catch (err) {
    const d = describeError(err);
    const log = createLogger(env.LOG_LEVEL && /^[a-z]+$/.test(env.LOG_LEVEL) ? env.LOG_LEVEL : 'info');
    log.fatal({ err }, d.message);
    if (err instanceof WalbridgeError && err.hint) process.stderr.write(`${d.message}\n${err.hint}\n`);
    else process.stderr.write(`${d.message}\n`);
    return 2;
  }
  const log = createLogger(config.logLevel);
  const metrics = new Metrics();
  const status = new LiveStatus(metrics);
  const controller = new AbortController();
  const exitOnError = opts.exitOnError ?? /^(1|true|yes)$/i.test(env.WALBRIDGE_EXIT_ON_ERROR ?? '');

  let server;
  try {
    server = await startHealthServer({ port: config.port, token: config.httpToken, metrics, status, log });
  } catch (err) {
    const code = (err as { code?: string }).code;
    log.fatal({ err }, `cannot listen on PORT ${config.port}${code === 'EADDRINUSE' ? ': the port is in use' : ''}`);
    process.stderr.write(`cannot listen on PORT ${config.port} (${code ?? String(err)}): set PORT to a free port\n`);
    return 2;
  }
  const reverse = opts.reverse ?? /^(1|true|yes)$/i.test(env.WALBRIDGE_REVERSE ?? '');
  const unregister = onShutdown(log, () => controller.abort());
  const stopMonitor = startMonitor({
    config,
    log: log.child({ component: 'monitor' }),
    metrics,
    status,
    onDone: () => {
      status.setPhase('done');
      controller.abort();
    },
  });
  log.info(
    { schemas: config.schemas, slot: config.slotName, publication: config.publicationName, copyJobs: config.copyJobs, reverse },
    reverse ? 'walbridge starting the way back (target → source)' : 'walbridge starting',
  );
  try {
    const code = await supervise({ config, log, metrics, status, signal: controller.signal, exitOnError, mode: reverse ? 'reverse' : 'forward' });
    log.info({ exitCode: code }, 'walbridge stopped');
    return code;
  } finally {
    unregister();
    await stopMonitor();
    await server.close();
  }
}
