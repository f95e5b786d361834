import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { LineFiles } from '../lib/line-files.ts';
import { queueIdTime, type QueueId } from '../model/ids.ts';

/** Where the sent ledger lives: beside the feedback outbox, `<feedback.dir>/sent`. */
export const returnsDir = (config: { readonly feedback: { readonly dir: string } }): string => join(config.feedback.dir, 'sent');

/** What a bounce arriving later needs to know of a recipient it is about. */
export interface SentRecipient {
  readonly queue_id: string;
  readonly index: number;
  readonly recipient: string;
  readonly sender: string;
  readonly message_id: string;
  readonly meta: Readonly<Record<string, unknown>>;
  /** When it was delivered (ms). */
  readonly at: number;
}

const MINUTE_MS = 60_000;

/**
 * The recipients Tern delivered, kept `keepMs` so a bounce that comes back days later finds its
 * campaign: JSON lines in `<dir>/<arrival minute>-s<shard>.jsonl`, filed by the minute the
 * message arrived (its queue id says), so a lookup reads one minute's files: at a million
 * deliveries an hour, about 5 MB, where an hour's file would be 300 MB. Each batch is appended
 * and synced (fdatasync) before the next is written, like the outbox's events: a bounce about a
 * delivery Tern has reported finds it after a crash too.
 */
export class SentLedger {
  readonly #files: LineFiles;
  readonly #shard: number;

  constructor(dir: string, shard: number, clock: Clock, log: Logger) {
    this.#files = new LineFiles(dir, clock, log, { sync: true, what: 'the sent ledger; bounces about these recipients will not be matched' });
    this.#shard = shard;
  }

  /** Written at once (one synced append per minute file per batch of events): a bounce can come back in seconds. */
  record(sent: SentRecipient): void {
    this.#files.add(`${minuteOf(sent.queue_id as QueueId)}-s${this.#shard}.jsonl`, JSON.stringify(sent));
  }

  /** Write what is pending (also at stop). */
  flush(): Promise<void> {
    return this.#files.flush();
  }
}

/** Every shard's entries for one message, read from its arrival minute's files. */
export async function findSent(dir: string, queueId: QueueId): Promise<SentRecipient[]> {
  const minute = minuteOf(queueId);
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.startsWith(`${minute}-s`));
  const found: SentRecipient[] = [];
  for (const f of files) {
    const text = await readFile(join(dir, f), 'utf8').catch(() => '');
    for (const line of text.split('\n')) {
      if (!line.includes(queueId)) continue;
      const sent = JSON.parse(line) as SentRecipient;
      if (sent.queue_id === queueId) found.push(sent);
    }
  }
  return found;
}

/** Remove the minutes older than `keepMs`. */
export async function sweepSent(dir: string, now: number, keepMs: number): Promise<number> {
  const oldest = minuteOf(undefined, now - keepMs);
  const stale = (await readdir(dir).catch(() => [] as string[])).filter((f) => /^\d{12}-s\d+\.jsonl$/.test(f) && f.slice(0, 12) < oldest);
  for (const f of stale) await rm(join(dir, f), { force: true });
  return stale.length;
}

/** YYYYMMDDHHmm (UTC) of a queue id's arrival, or of a time. */
function minuteOf(queueId: QueueId | undefined, at = queueId ? queueIdTime(queueId) : 0): string {
  return new Date(Math.floor(at / MINUTE_MS) * MINUTE_MS).toISOString().slice(0, 16).replace(/[-T:]/g, '');
}
