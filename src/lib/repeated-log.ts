import type { Logger } from 'pino';
import type { Clock } from './clock.ts';

/** How often one kind of repeated fault is logged: once a minute, with the count in between. */
export const FAULT_LOG_INTERVAL_MS = 60_000;

/** Kinds of repeated error remembered at once; past this, the oldest kind is forgotten. */
const MAX_KINDS = 256;

interface Run { loggedAt: number; suppressed: number }

/**
 * A full disk or a dead endpoint makes the same error for every message, many times a second:
 * logging each drowns the one line an operator needs (a disk-full run wrote 49 MB of logs). The
 * first of a kind is logged at once; the next ones are counted, and the first one after
 * `intervalMs` is logged with `repeated`: how many were not logged since the line before.
 */
export class RepeatedLog {
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #runs = new Map<string, Run>();

  constructor(log: Logger, clock: Clock, intervalMs = FAULT_LOG_INTERVAL_MS) {
    this.#log = log;
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  error(kind: string, fields: Record<string, unknown>, message: string): void {
    this.#write('error', kind, fields, message);
  }

  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    this.#write('warn', kind, fields, message);
  }

  info(kind: string, fields: Record<string, unknown>, message: string): void {
    this.#write('info', kind, fields, message);
  }

  #write(level: 'error' | 'warn' | 'info', kind: string, fields: Record<string, unknown>, message: string): void {
    const now = this.#clock.now();
    const run = this.#runs.get(kind);
    if (run && now - run.loggedAt < this.#intervalMs) {
      run.suppressed++;
      return;
    }
    this.#log[level]({ ...fields, ...(run && run.suppressed > 0 ? { repeated: run.suppressed } : {}) }, message);
    this.#runs.delete(kind);
    this.#runs.set(kind, { loggedAt: now, suppressed: 0 });
    if (this.#runs.size > MAX_KINDS) this.#runs.delete(this.#runs.keys().next().value as string);
  }
}

/** What kind of error this is, for RepeatedLog: its code when it has one, else its message. */
export const errorKind = (err: unknown): string => {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  return String(e?.code ?? e?.message ?? err);
};
