/**
 * pino JSON lines. Child loggers carry `component`, `table` and `lsn`. Every string that
 * reaches a log line passes through `redactSecrets`, so a driver error that quotes a
 * connection string cannot leak a password.
 */
import { format } from 'node:util';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { redactSecrets } from './redact.js';
import { describeError } from './errors.js';

export type { Logger };

function scrub(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  // Errors are left whole for the `err` serializer, which redacts them itself.
  if (value === null || typeof value !== 'object' || value instanceof Error) return value;
  // Past this depth an object is logged as redacted JSON text rather than walked further.
  if (depth > 8) return redactSecrets(safeJson(value));
  if (Array.isArray(value)) return value.map((v) => scrub(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = /password|secret|token|url$/i.test(k) && typeof v === 'string' ? '***' : scrub(v, depth + 1);
  }
  return out;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return '[unserializable]';
  }
}

function serializeError(err: unknown): Record<string, unknown> {
  const d = describeError(err);
  const e = err as { code?: unknown; stack?: unknown; cause?: unknown };
  const out: Record<string, unknown> = { kind: d.kind, message: d.message };
  if (d.hint) out.hint = d.hint;
  if (typeof e?.code === 'string') out.code = e.code;
  const detail = (err as { detail?: unknown })?.detail;
  if (typeof detail === 'string') out.detail = redactSecrets(detail);
  if (typeof e?.stack === 'string') out.stack = redactSecrets(e.stack);
  if (e?.cause !== undefined && e.cause !== err) {
    out.cause = describeError(e.cause).message;
  }
  return out;
}

export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  const options: LoggerOptions = {
    level,
    base: { service: 'walbridge' },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: { err: serializeError, error: serializeError },
    formatters: {
      level: (label) => ({ level: label }),
      log: (obj) => scrub(obj) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        const [first, ...rest] = args as unknown[];
        // log.error(err): pino would copy err.message into `msg` unredacted; pass it as { err }.
        const obj = first instanceof Error ? { err: first } : first;
        const text = first instanceof Error ? first.message : undefined;
        const strings = typeof obj === 'string' ? [obj, ...rest] : rest;
        // Format arguments (%s, %j, %o) are formatted here so the result can be redacted.
        const message = strings.length > 0 ? redactSecrets(format(...strings)) : text !== undefined ? redactSecrets(text) : undefined;
        const cleaned = (typeof obj === 'string' ? [message] : message === undefined ? [obj] : [obj, message]) as Parameters<typeof method>;
        method.apply(this, cleaned);
      },
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
