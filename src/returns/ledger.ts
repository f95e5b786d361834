import { appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
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

const HOUR_MS = 3_600_000;

/**
 * The recipients Tern delivered, kept `keepMs` so a bounce that comes back days later finds its
 * campaign: JSON lines in `<dir>/<arrival hour>-s<shard>.jsonl`, filed by the hour the message
 * arrived (its queue id says), so a lookup reads one hour's files. Appended as events are recorded
 * and not synced: a crash can lose the last few, and a bounce about them is counted unmatched.
 */
export class SentLedger {
  readonly #dir: string;
  readonly #shard: number;
  readonly #clock: Clock;
  readonly #log: Logger;
  #pending = new Map<string, string[]>();
  #timer: Timer | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(dir: string, shard: number, clock: Clock, log: Logger) {
    this.#dir = dir;
    this.#shard = shard;
    this.#clock = clock;
    this.#log = log;
  }

  record(sent: SentRecipient): void {
    const file = `${hourOf(sent.queue_id as QueueId)}-s${this.#shard}.jsonl`;
    const lines = this.#pending.get(file) ?? [];
    lines.push(`${JSON.stringify(sent)}\n`);
    this.#pending.set(file, lines);
    // Written at once (one append per hour file per batch of events): a bounce can come back in seconds.
    this.#timer ??= this.#clock.at(this.#clock.now(), () => void this.flush());
  }

  /** Write what is pending (also at stop). */
  flush(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#writing = this.#writing.then(async () => {
      await mkdir(this.#dir, { recursive: true });
      for (const [file, lines] of batch) await appendFile(join(this.#dir, file), lines.join('')).catch((err: unknown) => this.#log.error({ err, file }, 'returns: cannot write the sent ledger; bounces about these recipients will not be matched'));
    });
    return this.#writing;
  }
}

/** Every shard's entries for one message, read from its arrival hour's files. */
export async function findSent(dir: string, queueId: QueueId): Promise<SentRecipient[]> {
  const hour = hourOf(queueId);
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.startsWith(`${hour}-s`));
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

/** Remove the hours older than `keepMs`. */
export async function sweepSent(dir: string, now: number, keepMs: number): Promise<number> {
  const oldest = hourOf(undefined, now - keepMs);
  const stale = (await readdir(dir).catch(() => [] as string[])).filter((f) => /^\d{10}-s\d+\.jsonl$/.test(f) && f.slice(0, 10) < oldest);
  for (const f of stale) await rm(join(dir, f), { force: true });
  return stale.length;
}

/** YYYYMMDDHH (UTC) of a queue id's arrival, or of a time. */
function hourOf(queueId: QueueId | undefined, at = queueId ? queueIdTime(queueId) : 0): string {
  return new Date(Math.floor(at / HOUR_MS) * HOUR_MS).toISOString().slice(0, 13).replace(/[-T]/g, '');
}
