import { createHash } from 'node:crypto';
import { readdir, readFile, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { LineFiles } from '../lib/line-files.ts';
import type { FeedbackEvent } from '../model/event.ts';

/**
 * Each campaign's delivery log (docs/dashboard.md, "Campaigns"): every event of a recipient of
 * `meta.campaign`, one short JSON line, in `<dir>/<campaign key>/<hour>-s<shard>.jsonl`. A campaign
 * is read from its own files only, newest hour first. A view, not the record (the outbox is): not
 * synced, so a crash may lose the last lines; hours past `keep` are swept.
 */
export interface LogEntry {
  /** Event time (ms). */
  readonly t: number;
  readonly type: string;
  readonly recipient: string;
  readonly queue_id: string;
  readonly code?: number;
  readonly enhanced?: string;
  readonly text?: string;
  readonly reason?: string;
  readonly class?: number;
  /** The campaign-side failure type: hard, soft, ignored. */
  readonly failure_type?: string;
  readonly cause?: string;
  readonly async?: true;
}

export const CAMPAIGN_LOG_LIMITS = {
  /** Reply text kept per line. */
  textChars: 200,
  /** Entries one page may ask for. */
  maxPage: 500,
  /** Rows a CSV export holds at most. */
  maxCsvRows: 1_000_000,
} as const;

/** A campaign id's directory: a digest, so any id is a safe name, and ids cannot collide by case. */
export function campaignKey(id: string): string {
  return createHash('sha256').update(id).digest('hex').slice(0, 32);
}

export class CampaignLog {
  readonly #files: LineFiles;
  readonly #shard: number;

  constructor(dir: string, shard: number, clock: Clock, log: Logger) {
    this.#files = new LineFiles(dir, clock, log, { sync: false, what: 'the campaign log' });
    this.#shard = shard;
  }

  record(e: FeedbackEvent): void {
    const campaign = e.meta.campaign;
    if (typeof campaign !== 'string' && typeof campaign !== 'number') return;
    const t = Date.parse(e.time);
    const entry: LogEntry = {
      t, type: e.type, recipient: e.recipient, queue_id: e.queue_id,
      ...(e.response ? { code: e.response.code, ...(e.response.enhanced ? { enhanced: e.response.enhanced } : {}), text: e.response.text.slice(0, CAMPAIGN_LOG_LIMITS.textChars) } : {}),
      ...(e.bounce ? { reason: e.bounce.reason, class: e.bounce.class, failure_type: e.bounce.type } : {}),
      ...(e.cause ? { cause: e.cause } : {}),
      ...(e.async ? { async: true as const } : {}),
    };
    this.#files.add(`${campaignKey(String(campaign))}/${hourOf(t)}-s${this.#shard}.jsonl`, JSON.stringify(entry));
  }

  flush(): Promise<void> {
    return this.#files.flush();
  }
}

export interface LogQuery {
  /** A part of the recipient address, any case. */
  readonly recipient?: string;
  /** One event type: relayed, delivered, soft_bounce, failed, complaint. */
  readonly type?: string;
  readonly offset: number;
  readonly limit: number;
}

/** The hours a campaign has files for, newest first, each with its shards' files. */
async function hoursOf(dir: string, campaign: string): Promise<{ hour: string; files: string[] }[]> {
  const own = join(dir, campaignKey(campaign));
  const names = (await readdir(own).catch(() => [] as string[])).filter((f) => /^\d{10}-s\d+\.jsonl$/.test(f));
  const hours = new Map<string, string[]>();
  for (const f of names) hours.set(f.slice(0, 10), [...(hours.get(f.slice(0, 10)) ?? []), join(own, f)]);
  return [...hours].sort((a, b) => b[0].localeCompare(a[0])).map(([hour, files]) => ({ hour, files }));
}

/** One hour's entries of every shard, newest first. */
async function entriesOf(files: readonly string[]): Promise<LogEntry[]> {
  const entries: LogEntry[] = [];
  for (const f of files) {
    for (const line of (await readFile(f, 'utf8').catch(() => '')).split('\n')) {
      if (line === '') continue;
      try {
        entries.push(JSON.parse(line) as LogEntry);
      } catch {
        // A line cut by a crash: the rest of the file is still good.
      }
    }
  }
  return entries.sort((a, b) => b.t - a.t);
}

function matches(e: LogEntry, q: Pick<LogQuery, 'recipient' | 'type'>): boolean {
  if (q.type && e.type !== q.type) return false;
  return !q.recipient || e.recipient.toLowerCase().includes(q.recipient.toLowerCase());
}

/** A page of a campaign's log, newest first; `more` when entries past it match too. */
export async function readCampaignLog(dir: string, campaign: string, q: LogQuery): Promise<{ entries: LogEntry[]; more: boolean }> {
  const limit = Math.min(Math.max(1, q.limit), CAMPAIGN_LOG_LIMITS.maxPage);
  const wanted = q.offset + limit + 1;
  const found: LogEntry[] = [];
  for (const { files } of await hoursOf(dir, campaign)) {
    for (const e of await entriesOf(files)) if (matches(e, q)) found.push(e);
    if (found.length >= wanted) break;
  }
  return { entries: found.slice(q.offset, q.offset + limit), more: found.length > q.offset + limit };
}

/** Every matching entry as CSV lines (a header first), newest first, at most maxCsvRows. */
export async function* campaignLogCsv(dir: string, campaign: string, q: Pick<LogQuery, 'recipient' | 'type'>): AsyncGenerator<string> {
  yield 'time,type,recipient,queue_id,code,enhanced,reason,class,failure_type,cause,async,text\n';
  let rows = 0;
  for (const { files } of await hoursOf(dir, campaign)) {
    for (const e of await entriesOf(files)) {
      if (!matches(e, q)) continue;
      if (++rows > CAMPAIGN_LOG_LIMITS.maxCsvRows) return;
      yield `${[new Date(e.t).toISOString(), e.type, e.recipient, e.queue_id, e.code, e.enhanced, e.reason, e.class, e.failure_type, e.cause, e.async ? 'true' : '', e.text].map(csvField).join(',')}\n`;
    }
  }
}

/** A field as RFC 4180 writes it; a leading = + - @ is quoted away so a spreadsheet shows text, not a formula. */
export function csvField(value: unknown): string {
  if (value === undefined || value === null) return '';
  let text = String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export interface TimelineRow { readonly minute: number; readonly relayed: number; readonly delivered: number; readonly soft_bounce: number; readonly failed: number }

/** A campaign's events per minute since `since` (ms), oldest first. */
export async function campaignTimeline(dir: string, campaign: string, since: number): Promise<TimelineRow[]> {
  const from = hourOf(since);
  const rows = new Map<number, { relayed: number; delivered: number; soft_bounce: number; failed: number }>();
  for (const { hour, files } of await hoursOf(dir, campaign)) {
    if (hour < from) break;
    for (const e of await entriesOf(files)) {
      if (e.t < since || !(e.type === 'relayed' || e.type === 'delivered' || e.type === 'soft_bounce' || e.type === 'failed')) continue;
      const minute = Math.floor(e.t / 60_000) * 60_000;
      const row = rows.get(minute) ?? { relayed: 0, delivered: 0, soft_bounce: 0, failed: 0 };
      row[e.type] += 1;
      rows.set(minute, row);
    }
  }
  return [...rows].sort((a, b) => a[0] - b[0]).map(([minute, r]) => ({ minute, ...r }));
}

/** Remove hours older than `keepMs`, and campaign directories left empty. */
export async function sweepCampaignLogs(dir: string, now: number, keepMs: number): Promise<number> {
  const oldest = hourOf(now - keepMs);
  let removed = 0;
  for (const key of await readdir(dir).catch(() => [] as string[])) {
    if (!/^[0-9a-f]{32}$/.test(key)) continue;
    const files = await readdir(join(dir, key)).catch(() => [] as string[]);
    const stale = files.filter((f) => /^\d{10}-s\d+\.jsonl$/.test(f) && f.slice(0, 10) < oldest);
    for (const f of stale) await rm(join(dir, key, f), { force: true });
    removed += stale.length;
    if (stale.length === files.length) await rmdir(join(dir, key)).catch(() => undefined);
  }
  return removed;
}

/** YYYYMMDDHH (UTC). */
function hourOf(ms: number): string {
  return new Date(Math.floor(ms / 3_600_000) * 3_600_000).toISOString().slice(0, 13).replace(/[-T]/g, '');
}

/** Sweeps the campaign logs now and every hour until stopped. */
export function sweepCampaignLogsHourly(dir: string, keepMs: number, clock: Clock, log: Logger): { stop(): void } {
  let timer: ReturnType<Clock['at']> | undefined;
  const sweep = (): void => {
    void sweepCampaignLogs(dir, clock.now(), keepMs).then(
      (n) => n > 0 && log.info({ files: n }, 'feedback: campaign log hours past feedback.campaign_log.keep removed'),
      (err: unknown) => log.warn({ err }, 'feedback: cannot sweep the campaign logs'),
    );
    timer = clock.at(clock.now() + 3_600_000, sweep);
  };
  sweep();
  return { stop: () => timer?.cancel() };
}
