/**
 * Signals, handled in one place. The first SIGTERM/SIGINT asks the pipeline to stop
 * gracefully (finish or roll back the target transaction, acknowledge what is durable,
 * close connections); if that takes longer than the grace period, or a second signal
 * arrives, the process exits at once. Nothing is lost either way: the target's recorded
 * position is the only truth, and the source resends anything past it.
 */
import type { Logger } from './log.js';

const GRACE_MS = 9_000;

export function onShutdown(log: Logger, stop: () => void): () => void {
  let signalled = false;
  const handler = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    signalled = true;
    log.info({ signal }, 'stopping: finishing the transaction in flight and acknowledging what is durable');
    stop();
    const force = setTimeout(() => {
      log.error('graceful stop took too long; exiting');
      process.exit(1);
    }, GRACE_MS);
    force.unref();
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
