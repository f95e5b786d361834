/**
 * TLS-RPT's daily aggregates (RFC 8460, docs/tls.md): every session under a receiver's policy
 * (MTA-STS or DANE) counted per policy domain and UTC day, kept on disk
 * (`<dir>/<date>.<shard>.json`, written a minute after a change and at stop), and after each day
 * one report per domain that asks for them (`_smtp._tls` TXT), gzipped JSON, to each of its
 * `rua` addresses. One shard sends (`sends`), merging every shard's file of the day.
 */
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { saveSoon } from '../lib/save-soon.ts';
import { buildReport, countSession, mergeDays, parseTlsRptRecord, reportMail, type DayCounts, type SessionResult } from './tlsrpt.ts';

export const REPORT_TIMING = {
  /** Counts reach the disk this long after a change. */
  saveDelayMs: 60_000,
  /** How often the sending shard looks for finished days. */
  checkEveryMs: 3_600_000,
  /** A day is reported once this long past its end, so every shard has written it. */
  settleMs: 300_000,
  /** An address that could not be reached is tried again at each check for this long past the day. */
  retryForMs: 2 * 86_400_000,
} as const;

export interface ReportSender {
  /** POST the gzipped report to an https: rua; resolves with the HTTP status or rejects. */
  https(url: string, gzipped: Buffer): Promise<number>;
  /** Mail to a mailto: rua, through Tern's own queue. */
  mail(from: string, to: string, message: string): Promise<void>;
}

export interface TlsReportsOptions {
  readonly dir: string;
  readonly shard: number;
  /** This shard sends the reports (one shard of a node does). */
  readonly sends: boolean;
  readonly organization: string;
  readonly contact: string;
  readonly from: string;
  /** This node's name: report ids are `<day>.<domain>.<node>`, the same on each try, unique in a fleet. */
  readonly node: string;
}

export interface TlsReports {
  /** One session to `domain` under its policy. */
  record(domain: string, session: SessionResult): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Report every finished day now (the hourly check does it by itself). */
  reportDue(): Promise<number>;
}

const utcDay = (ms: number): string => new Date(ms).toISOString().slice(0, 10);

export function openTlsReports(options: TlsReportsOptions, deps: { txt: (name: string) => Promise<readonly string[] | undefined>; send: ReportSender; clock: Clock; log: Logger }): TlsReports {
  const { clock, log } = deps;
  /** day → domain → counts, for the days not yet written away. */
  const days = new Map<string, Map<string, DayCounts>>();
  const fileOf = (day: string): string => `${day}.${options.shard}.json`;
  const savers = new Map<string, ReturnType<typeof saveSoon>>();
  let checking: Timer | undefined;

  const saverOf = (day: string): ReturnType<typeof saveSoon> => {
    let saver = savers.get(day);
    if (!saver) {
      saver = saveSoon(clock, REPORT_TIMING.saveDelayMs, () => replaceFile(options.dir, fileOf(day), JSON.stringify(Object.fromEntries(days.get(day) ?? new Map())))
        .catch((err: unknown) => log.warn({ err, day }, 'TLS-RPT: counts not written')));
      savers.set(day, saver);
    }
    return saver;
  };

  async function readDay(day: string): Promise<DayCounts[]> {
    const names = (await readdir(options.dir).catch(() => [] as string[])).filter((n) => n.startsWith(`${day}.`) && n.endsWith('.json'));
    const out: Record<string, DayCounts[]> = {};
    for (const name of names) {
      try {
        const saved = JSON.parse(await readFile(join(options.dir, name), 'utf8')) as Record<string, DayCounts>;
        for (const [domain, counts] of Object.entries(saved)) (out[domain] ??= []).push(counts);
      } catch (err) {
        log.warn({ err, file: name }, 'TLS-RPT: a counts file could not be read; left out');
      }
    }
    return Object.entries(out).map(([domain, list]) => ({ ...mergeDays(list), domain }) as DayCounts & { domain: string });
  }

  /** The domain's report to each of its addresses not yet reached (`done` holds `domain rua` of those reached); false: not asked for. */
  async function sendOne(day: string, domain: string, counts: DayCounts, done: Set<string>): Promise<{ asked: boolean; failed: number }> {
    const records = await deps.txt(`_smtp._tls.${domain}`);
    const record = records ? parseTlsRptRecord(records) : undefined;
    if (!record?.ok) return { asked: false, failed: 0 };
    const meta = { organization: options.organization, contact: options.contact, reportId: `${day}.${domain}.${options.node}`, date: day, domain };
    const gzipped = gzipSync(JSON.stringify(buildReport(meta, counts)));
    let failed = 0;
    for (const rua of record.value.rua) {
      if (done.has(`${domain} ${rua}`)) continue;
      try {
        if (rua.startsWith('mailto:')) {
          await deps.send.mail(options.from, rua.slice(7), reportMail(meta, options.from, rua.slice(7), gzipped, `${meta.reportId}@${options.organization}`, new Date(clock.now())));
        } else {
          const status = await deps.send.https(rua, gzipped);
          if (status < 200 || status >= 300) throw new Error(`HTTP ${status}`);
        }
        done.add(`${domain} ${rua}`);
        log.info({ domain, day, rua }, `TLS-RPT: report for ${domain} (${day}) sent to ${rua}`);
      } catch (err) {
        failed++;
        log.warn({ err, domain, day, rua }, `TLS-RPT: report for ${domain} (${day}) not sent to ${rua}: ${(err as Error).message}; tried again at the next check`);
      }
    }
    return { asked: true, failed };
  }

  // One run at a time: the hourly check and a caller never report a day twice.
  let running: Promise<number> = Promise.resolve(0);
  const reportDue = (): Promise<number> => (running = running.then(reportDays, reportDays));

  async function reportDays(): Promise<number> {
    if (!options.sends) return 0;
    // This shard's own counts first: what it counted a moment ago is on disk like the others'.
    await Promise.all([...savers.values()].map((s) => s.now()));
    const today = utcDay(clock.now() - REPORT_TIMING.settleMs);
    const files = await readdir(options.dir).catch(() => [] as string[]);
    const due = [...new Set(files.map((n) => n.slice(0, 10)).filter((d) => /^\d{4}-\d{2}-\d{2}$/.test(d) && d < today))].sort();
    let sent = 0;
    for (const day of due) {
      const sentFile = `${day}.sent`;
      const done = new Set<string>(await readFile(join(options.dir, sentFile), 'utf8').then((t) => JSON.parse(t) as string[], () => []));
      let failed = 0;
      for (const counts of (await readDay(day)) as (DayCounts & { domain: string })[]) {
        const result = await sendOne(day, counts.domain, counts, done);
        if (result.asked) sent++;
        failed += result.failed;
      }
      days.delete(day);
      savers.delete(day);
      const givingUp = clock.now() > Date.parse(`${day}T23:59:59Z`) + REPORT_TIMING.retryForMs;
      if (failed > 0 && !givingUp) {
        // Some address was not reached: the day stays, with who has it, for the next check.
        await replaceFile(options.dir, sentFile, JSON.stringify([...done]));
        continue;
      }
      if (failed > 0) log.warn({ day }, `TLS-RPT: reports of ${day} not sent to every address within ${REPORT_TIMING.retryForMs / 3_600_000} h; given up`);
      // Reported (or asked for by no one): the day's counts go, every shard's, and from memory.
      for (const name of files.filter((n) => n.startsWith(`${day}.`))) await rm(join(options.dir, name), { force: true });
    }
    return sent;
  }

  const scheduleCheck = (): void => {
    checking = clock.at(clock.now() + REPORT_TIMING.checkEveryMs, () => void reportDue().catch((err: unknown) => log.warn({ err }, 'TLS-RPT: reports not made')).finally(scheduleCheck));
  };

  return {
    record(domain, session) {
      const day = utcDay(clock.now());
      let byDomain = days.get(day);
      if (!byDomain) {
        byDomain = new Map();
        days.set(day, byDomain);
        // Yesterday's counts are written out for good and leave memory.
        for (const [old, saver] of savers) if (old < day) void saver.now().then(() => { days.delete(old); savers.delete(old); });
      }
      let counts = byDomain.get(domain);
      if (!counts) {
        counts = { policies: {} };
        byDomain.set(domain, counts);
      }
      countSession(counts, session);
      saverOf(day).soon();
    },
    async start() {
      // Counts of today from before a restart continue in memory.
      const day = utcDay(clock.now());
      try {
        const saved = JSON.parse(await readFile(join(options.dir, fileOf(day)), 'utf8')) as Record<string, DayCounts>;
        days.set(day, new Map(Object.entries(saved)));
      } catch {
        // None yet.
      }
      if (options.sends) scheduleCheck();
    },
    async stop() {
      checking?.cancel();
      await Promise.all([...savers.values()].map((s) => s.now()));
    },
    reportDue,
  };
}
