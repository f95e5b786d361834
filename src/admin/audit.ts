import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { AppendFile } from '../lib/append-file.ts';
import type { Clock } from '../lib/clock.ts';

/**
 * Every admin write call, one JSON line each in `<admin.state_dir>/audit.log` and in the log:
 * when, what, on which selector, from where, and how many recipients it affected. Written
 * before the call is answered; a call whose line cannot be written still happened, and says so.
 */
export interface AuditEntry {
  readonly action: string;
  readonly selector: Readonly<Record<string, string>>;
  readonly remote: string | undefined;
  readonly result: 'ok' | 'not-found' | 'failed';
  readonly detail: Readonly<Record<string, unknown>>;
}

export interface Audit {
  record(entry: AuditEntry): Promise<{ written: boolean }>;
  close(): Promise<void>;
}

export function openAudit(dir: string, clock: Clock, log: Logger): Audit {
  mkdirSync(dir, { recursive: true });
  const file = new AppendFile(join(dir, 'audit.log'));
  return {
    async record(entry) {
      const line = { time: new Date(clock.now()).toISOString(), ...entry };
      log.info({ event: 'admin', ...line }, `admin: ${entry.action} ${JSON.stringify(entry.selector)}: ${entry.result}`);
      try {
        await file.append(`${JSON.stringify(line)}\n`);
        return { written: true };
      } catch (err) {
        log.error({ err, path: file.path }, 'admin: audit log not written');
        return { written: false };
      }
    },
    close: () => file.close(),
  };
}
