/**
 * `walbridge run` / `node dist/daemon.js`: the long-running service.
 */
import { LOG_LEVELS, type ConfigOverrides } from '../config.js';
import { describeError } from '../errors.js';
import { Metrics } from '../health/metrics.js';
import { LiveStatus } from '../health/live-status.js';
import { startHealthServer } from '../health/server.js';
import { createLogger } from '../log.js';
import { startMonitor } from '../pipeline/monitor.js';
import { supervise } from '../pipeline/supervise.js';
import { onShutdown } from '../shutdown.js';
import { loadCommandConfig } from './config.js';

export interface RunOptions {
  /** Command-line flags, over the variables they shadow. */
  overrides?: ConfigOverrides;
}

export async function runCommand(env: NodeJS.ProcessEnv, opts: RunOptions = {}): Promise<number> {
  const config = loadCommandConfig(env, {
    overrides: opts.overrides,
    onError: (err) => {
      // The daemon's log gets the reason too (Railway shows it with the deploy's logs), at the
      // level asked for unless LOG_LEVEL is itself what is wrong.
      const level = LOG_LEVELS.find((l) => l === env.LOG_LEVEL?.trim()) ?? 'info';
      createLogger(level).fatal({ err }, describeError(err).message);
    },
  });
  if (!config) return 2;
  const { reverse, exitOnError } = config;
  const log = createLogger(config.logLevel);
  const metrics = new Metrics();
  const status = new LiveStatus(metrics, config.slotName, config.conversions);
  const controller = new AbortController();

  let server;
  try {
    server = await startHealthServer({ port: config.port, token: config.httpToken, metrics, status, log });
  } catch (err) {
    const code = (err as { code?: string }).code;
    log.fatal({ err }, `cannot listen on PORT ${config.port}${code === 'EADDRINUSE' ? ': the port is in use' : ''}`);
    process.stderr.write(`cannot listen on PORT ${config.port} (${code ?? String(err)}): set PORT to a free port\n`);
    return 2;
  }
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
    { schemas: config.schemas, group: config.group, slot: config.slotName, publication: config.publicationName, copyJobs: config.copyJobs, reverse },
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
