import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { saveSoon } from '../lib/save-soon.ts';
import { suppressionKey, type SuppressionChange, type SuppressionEntry, type SuppressionReason } from '../model/suppression.ts';

const STATE_FILE = 'suppressions.json';
const SAVE_SOON_MS = 1_000;
const SWEEP_EVERY_MS = 3_600_000;

export interface SuppressionStore {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Suppress an address for mail from a sender domain; an entry already there is renewed. */
  add(domain: string, address: string, reason: SuppressionReason, detail: string, forMs?: number): SuppressionEntry;
  /** False when it was not suppressed. */
  remove(domain: string, address: string): boolean;
  get(domain: string, address: string): SuppressionEntry | undefined;
  /** Entries in force, optionally of one domain or address, at most `limit`. */
  list(filter?: { domain?: string; address?: string }, limit?: number): SuppressionEntry[];
  readonly size: number;
}

/**
 * The suppression list (the coordinator's): kept in memory, saved whole to
 * `<suppression.state_dir>/suppressions.json` a second after a change (renamed into place), swept
 * of lapsed entries hourly. Every change is passed to `onChange` (shards keep copies).
 */
export function createSuppressionStore(options: { dir: string; periodMs: number }, deps: { clock: Clock; log: Logger; onChange?: (change: SuppressionChange) => void }): SuppressionStore {
  const { clock, log } = deps;
  const entries = new Map<string, SuppressionEntry>();
  let sweepTimer: Timer | undefined;
  const saver = saveSoon(clock, SAVE_SOON_MS, async () => {
    await replaceFile(options.dir, STATE_FILE, `${JSON.stringify({ version: 1, entries: [...entries.values()] })}\n`)
      .catch((err: unknown) => log.error({ err }, 'suppression: cannot save the list; kept in memory and saved at the next change'));
  });
  const scheduleSave = (): void => saver.soon();

  function sweep(): void {
    const now = clock.now();
    const gone = [...entries.values()].filter((e) => e.until <= now);
    for (const e of gone) entries.delete(suppressionKey(e.domain, e.address));
    if (gone.length > 0) {
      deps.onChange?.({ remove: gone.map(({ domain, address }) => ({ domain, address })) });
      scheduleSave();
    }
    sweepTimer = clock.at(clock.now() + SWEEP_EVERY_MS, sweep);
  }

  return {
    async start() {
      const text = await readFile(`${options.dir}/${STATE_FILE}`, 'utf8').catch(() => undefined);
      if (text) {
        try {
          for (const e of (JSON.parse(text) as { entries?: SuppressionEntry[] }).entries ?? []) entries.set(suppressionKey(e.domain, e.address), e);
        } catch (err) {
          log.error({ err }, 'suppression: the saved list is unreadable; starting empty');
        }
      }
      sweep();
    },
    async stop() {
      sweepTimer?.cancel();
      await saver.now();
    },
    add(domain, address, reason, detail, forMs = options.periodMs) {
      const now = clock.now();
      const entry: SuppressionEntry = { domain: domain.toLowerCase(), address: address.toLowerCase(), reason, detail: detail.slice(0, 500), since: now, until: now + forMs };
      entries.set(suppressionKey(domain, address), entry);
      deps.onChange?.({ add: [entry] });
      scheduleSave();
      return entry;
    },
    remove(domain, address) {
      const removed = entries.delete(suppressionKey(domain, address));
      if (removed) {
        deps.onChange?.({ remove: [{ domain: domain.toLowerCase(), address: address.toLowerCase() }] });
        scheduleSave();
      }
      return removed;
    },
    get(domain, address) {
      const e = entries.get(suppressionKey(domain, address));
      return e && e.until > clock.now() ? e : undefined;
    },
    list(filter = {}, limit = 1_000) {
      const now = clock.now();
      const out: SuppressionEntry[] = [];
      for (const e of entries.values()) {
        if (e.until <= now || (filter.domain && e.domain !== filter.domain.toLowerCase()) || (filter.address && e.address !== filter.address.toLowerCase())) continue;
        out.push(e);
        if (out.length >= limit) break;
      }
      return out;
    },
    get size() {
      return entries.size;
    },
  };
}
