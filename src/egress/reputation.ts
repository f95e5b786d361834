import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import type { BounceClassification } from '../model/bounce.ts';
import type { Calendar } from './calendar.ts';

/** Replies that say a receiver distrusts or is slowing a source: blocks (classes 50-54) and throttles. */
const THROTTLES = new Set(['toomanyconn', 'speeding']);

export function isThrottleOrBlock(bounce: Pick<BounceClassification, 'category' | 'reason'>): boolean {
  return bounce.category === 'block' || THROTTLES.has(bounce.reason);
}

/** One day of what a receiver said to one source. */
export interface DayCounts {
  readonly date: string;
  delivered: number;
  /** Recipients deferred, by bounce reason. */
  deferred: Record<string, number>;
  /** Recipients failed for good, by bounce type (hard, soft, ignored). */
  bounced: Record<string, number>;
  /** Throttle and block replies (a refused session counts one). */
  throttled: number;
}

export interface ReputationSummary {
  readonly days: number;
  readonly delivered: number;
  readonly deferred: Readonly<Record<string, number>>;
  readonly bounced: Readonly<Record<string, number>>;
  readonly throttled: number;
  /** Throttles and blocks per recipient tried, over the window (0 when nothing was tried). */
  readonly throttle_share: number;
}

const SAVE_EVERY_MS = 60_000;
const STATE_FILE = 'reputation.json';

/**
 * What each receiver (site) said to each source, a day at a time over the last `days` days: the
 * history an operator reads before moving traffic to an address, kept on disk across restarts.
 * Idle pairs fall out once their last day leaves the window, so memory follows the sites sent to.
 */
export class ReputationBook {
  readonly #book = new Map<string, DayCounts[]>();
  readonly #days: number;
  readonly #calendar: Calendar;
  readonly #clock: Clock;
  readonly #dir: string;
  readonly #log: Logger;
  #dirty = false;
  #timer: Timer | undefined;

  constructor(options: { days: number; dir: string; calendar: Calendar }, deps: { clock: Clock; log: Logger }) {
    this.#days = options.days;
    this.#dir = options.dir;
    this.#calendar = options.calendar;
    this.#clock = deps.clock;
    this.#log = deps.log;
  }

  async start(): Promise<void> {
    const text = await readFile(`${this.#dir}/${STATE_FILE}`, 'utf8').catch(() => undefined);
    if (text) {
      try {
        for (const [key, days] of Object.entries((JSON.parse(text) as { pairs?: Record<string, DayCounts[]> }).pairs ?? {})) this.#book.set(key, days);
      } catch (err) {
        this.#log.error({ err }, 'reputation: the saved history is unreadable; it starts again');
      }
    }
    this.#arm();
  }

  async stop(): Promise<void> {
    this.#timer?.cancel();
    if (this.#dirty) await this.#save();
  }

  delivered(source: string, site: string, recipients: number): void {
    this.#today(source, site).delivered += recipients;
  }

  /** A refusal: deferred (retry) by reason, or bounced by type; throttles and blocks counted apart. */
  refused(source: string, site: string, bounce: Pick<BounceClassification, 'category' | 'reason' | 'type' | 'retry'>, recipients: number): void {
    const day = this.#today(source, site);
    if (recipients > 0 && bounce.retry) day.deferred[bounce.reason] = (day.deferred[bounce.reason] ?? 0) + recipients;
    if (recipients > 0 && !bounce.retry) day.bounced[bounce.type] = (day.bounced[bounce.type] ?? 0) + recipients;
    if (isThrottleOrBlock(bounce)) day.throttled += Math.max(1, recipients);
  }

  /** The window's totals for one pair, or undefined when it has no history. */
  summary(source: string, site: string): ReputationSummary | undefined {
    const days = this.#window(`${source}|${site}`);
    return days.length === 0 ? undefined : summarise(days);
  }

  /** Every pair with history, optionally of one source or one site, worst throttle share first. */
  list(filter: { source?: string; site?: string } = {}): { source: string; site: string; summary: ReputationSummary; days: readonly DayCounts[] }[] {
    const out: { source: string; site: string; summary: ReputationSummary; days: readonly DayCounts[] }[] = [];
    for (const key of this.#book.keys()) {
      const [source = '', site = ''] = key.split('|');
      if ((filter.source && filter.source !== source) || (filter.site && filter.site !== site)) continue;
      const days = this.#window(key);
      if (days.length > 0) out.push({ source, site, summary: summarise(days), days });
    }
    return out.sort((a, b) => b.summary.throttle_share - a.summary.throttle_share || a.site.localeCompare(b.site));
  }

  #today(source: string, site: string): DayCounts {
    const key = `${source}|${site}`;
    const date = this.#calendar.date(this.#clock.now());
    const days = this.#book.get(key) ?? [];
    let day = days.at(-1);
    if (!day || day.date !== date) {
      day = { date, delivered: 0, deferred: {}, bounced: {}, throttled: 0 };
      days.push(day);
      this.#book.set(key, days.slice(-this.#days));
    }
    this.#dirty = true;
    return day;
  }

  /** The days of a pair still inside the window (a pair idle longer is forgotten). */
  #window(key: string): DayCounts[] {
    const oldest = this.#calendar.date(this.#clock.now() - (this.#days - 1) * 86_400_000);
    const days = (this.#book.get(key) ?? []).filter((d) => d.date >= oldest);
    if (days.length === 0) this.#book.delete(key);
    return days;
  }

  #arm(): void {
    this.#timer = this.#clock.at(this.#clock.now() + SAVE_EVERY_MS, () => {
      void (this.#dirty ? this.#save() : Promise.resolve()).finally(() => this.#arm());
    });
  }

  async #save(): Promise<void> {
    this.#dirty = false;
    for (const key of [...this.#book.keys()]) this.#window(key);
    await replaceFile(this.#dir, STATE_FILE, `${JSON.stringify({ version: 1, pairs: Object.fromEntries(this.#book) })}\n`)
      .catch((err: unknown) => {
        this.#dirty = true;
        this.#log.error({ err }, 'reputation: cannot save the history; kept in memory and tried again');
      });
  }
}

function summarise(days: readonly DayCounts[]): ReputationSummary {
  const deferred: Record<string, number> = {};
  const bounced: Record<string, number> = {};
  let delivered = 0;
  let throttled = 0;
  for (const d of days) {
    delivered += d.delivered;
    throttled += d.throttled;
    for (const [k, n] of Object.entries(d.deferred)) deferred[k] = (deferred[k] ?? 0) + n;
    for (const [k, n] of Object.entries(d.bounced)) bounced[k] = (bounced[k] ?? 0) + n;
  }
  const tried = delivered + Object.values(deferred).reduce((a, b) => a + b, 0) + Object.values(bounced).reduce((a, b) => a + b, 0);
  return { days: days.length, delivered, deferred, bounced, throttled, throttle_share: tried === 0 ? 0 : Math.round((throttled / tried) * 1000) / 1000 };
}
