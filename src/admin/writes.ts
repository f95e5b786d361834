import { z } from 'zod';
import { duration, hostname } from '../config/fields.ts';
import type { Operated, Selector } from '../model/selector.ts';
import { suspensionKey, type Suspension } from '../model/suspension.ts';
import type { SuppressionEntry } from '../model/suppression.ts';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { openAudit, type Audit } from './audit.ts';
import { openSuspensions, type Suspensions } from './suspensions.ts';

/**
 * The admin write calls (BRIEF §3, docs/operations.md "Write calls"): suspend and resume a
 * domain or site, flush or bounce waiting mail, pause, resume or move a source's warm-up. Each body is checked whole (a bad one is 400 with every
 * problem by key, and changes nothing), each call is written to the audit log and counted.
 */

/** The longest suspension one call may set; longer holds are a config change, not an incident. */
export const MAX_SUSPENSION_MS = 30 * 86_400_000;
const DEFAULT_SUSPENSION = '1h';
const MAX_REASON_CHARS = 500;

export interface WritePorts {
  readonly suspensions: Suspensions;
  /** Every shard's queue gets the list now in force. */
  readonly suspensionsChanged: (list: readonly Suspension[]) => Promise<void>;
  /** Make due now the waiting mail a selector names, in every shard. */
  readonly flush: (selector: Selector) => Promise<Operated>;
  /** Fail the waiting mail a selector names (cause "admin"), in every shard. */
  readonly bounce: (selector: Selector, reason: string) => Promise<Operated>;
  readonly audit: Audit;
  /** Count a call (tern_admin_actions_total). */
  readonly counted: (action: string, result: string) => void;
  /** Pause, resume or move a source's warm-up ramp (docs/egress.md); false: no such warming source. */
  readonly warmup: (source: string, action: 'pause' | 'resume' | 'skip', days: number) => boolean;
  /** A fleet's other nodes are told of each suspension and resume made here (docs/scaling.md). */
  readonly told?: { suspended(s: Suspension): void; resumed(s: Suspension): void };
  /** The suppression list (docs/bounces.md, "Suppression"). */
  readonly suppressionList: {
    add(domain: string, address: string, reason: 'admin', detail: string, forMs?: number): SuppressionEntry;
    remove(domain: string, address: string): boolean;
  };
}

export interface Answer { readonly status: number; readonly body: unknown }

/** "mx2.b.test, MX1.b.test." → "mx1.b.test,mx2.b.test": a site as the sites view names it. */
function siteName(text: string): string {
  return text.split(',').map((h) => h.trim().toLowerCase().replace(/\.$/, '')).sort().join(',');
}

const siteField = z.string().min(1).max(2_000).transform(siteName).refine((s) => s.split(',').every((h) => hostname.safeParse(h).success), 'must be MX host names joined by commas, as GET /api/v1/sites names a site');
const domainField = hostname.transform((d) => d.toLowerCase().replace(/\.$/, ''));
const target = { domain: domainField.optional(), site: siteField.optional() };
const oneTarget = (v: { domain?: string | undefined; site?: string | undefined }): boolean => (v.domain === undefined) !== (v.site === undefined);
const TARGET_PROBLEM = { message: 'give exactly one of "domain" or "site"', path: ['domain'] };

const suspendBody = z.strictObject({
  ...target,
  duration: duration.refine((ms) => ms > 0 && ms <= MAX_SUSPENSION_MS, 'must be longer than 0 and at most 30d').default(duration.parse(DEFAULT_SUSPENSION)),
  reason: z.string().max(MAX_REASON_CHARS).default(''),
}).refine(oneTarget, TARGET_PROBLEM);
const resumeBody = z.strictObject(target).refine(oneTarget, TARGET_PROBLEM);
const selectorFields = {
  campaign: z.string().min(1).max(256).optional(),
  delivery: z.string().min(1).max(256).optional(),
  domain: domainField.optional(),
  site: siteField.optional(),
  queue_id: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'is not a queue id').optional(),
};
const SELECTOR_PROBLEM = { message: 'give exactly one of "campaign", "delivery", "domain", "site" or "queue_id"', path: [] };
const oneSelector = (v: Record<string, unknown>): boolean => Object.keys(selectorFields).filter((k) => v[k] !== undefined).length === 1;
const flushBody = z.strictObject(selectorFields).refine(oneSelector, SELECTOR_PROBLEM);
const bounceBody = z.strictObject({ ...selectorFields, reason: z.string().max(MAX_REASON_CHARS).default('') }).refine(oneSelector, SELECTOR_PROBLEM);

const warmupBody = z.strictObject({
  source: z.string().regex(/^[\w.-]{1,64}$/, 'must be a source name from egress.sources'),
  action: z.enum(['pause', 'resume', 'skip']),
  /** skip: how many steps to move the ramp (negative goes back). */
  days: z.number().int().min(-366).max(366).refine((d) => d !== 0, 'must not be 0').optional(),
}).refine((v) => (v.action === 'skip') === (v.days !== undefined), { message: '"days" goes with "skip", and only with it', path: ['days'] });

const suppressionTarget = { domain: domainField, address: z.string().regex(/^[^\s@<>]{1,64}@[^\s@<>]{1,255}$/, 'must be an address, local-part@domain').transform((a) => a.toLowerCase()) };
const suppressAddBody = z.strictObject({
  ...suppressionTarget,
  duration: duration.refine((ms) => ms > 0, 'must be longer than 0').optional(),
  reason: z.string().max(MAX_REASON_CHARS).default('added by an operator'),
});
const suppressRemoveBody = z.strictObject(suppressionTarget);

/** The one selector key given, as the queue takes it. */
function selectorOf(v: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.keys(selectorFields).flatMap((k) => (typeof v[k] === 'string' ? [[k, v[k]]] : [])));
}

function problems(error: z.ZodError): { path: string; problem: string }[] {
  return error.issues.map((i) => ({ path: i.path.join('.') || '(body)', problem: i.message }));
}

export function suspensionView(s: Suspension, now: number): Record<string, unknown> {
  return { target: s.target, name: s.name, reason: s.reason, since: new Date(s.since).toISOString(), until: new Date(s.until).toISOString(), remaining_s: Math.max(0, Math.ceil((s.until - now) / 1000)) };
}

function targetOf(v: { domain?: string | undefined; site?: string | undefined }): { target: Suspension['target']; name: string } {
  return v.domain !== undefined ? { target: 'domain', name: v.domain } : { target: 'site', name: v.site as string };
}

export function createWrites(ports: WritePorts, now: () => number) {
  const refused = (action: string, error: z.ZodError): Answer => {
    ports.counted(action, 'refused');
    return { status: 400, body: { error: 'bad request', problems: problems(error) } };
  };
  const done = async (action: string, selector: Record<string, string>, remote: string | undefined, result: 'ok' | 'not-found', detail: Record<string, unknown>): Promise<Record<string, unknown>> => {
    ports.counted(action, result);
    const { written } = await ports.audit.record({ action, selector, remote, result, detail });
    return written ? {} : { warning: 'the audit log could not be written (see the log)' };
  };

  return {
    async suspend(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = suspendBody.safeParse(body);
      if (!parsed.success) return refused('suspend', parsed.error);
      const { target, name } = targetOf(parsed.data);
      const suspension = await ports.suspensions.suspend(target, name, parsed.data.duration, parsed.data.reason);
      await ports.suspensionsChanged(ports.suspensions.list());
      ports.told?.suspended(suspension);
      const view = suspensionView(suspension, now());
      const extra = await done('suspend', { [target]: name }, remote, 'ok', { until: view.until, reason: suspension.reason });
      return { status: 200, body: { suspended: view, ...extra } };
    },
    async resume(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = resumeBody.safeParse(body);
      if (!parsed.success) return refused('resume', parsed.error);
      const { target, name } = targetOf(parsed.data);
      const ended = await ports.suspensions.resume(target, name);
      if (!ended) {
        await done('resume', { [target]: name }, remote, 'not-found', {});
        return { status: 404, body: { error: `no suspension of ${target} ${name} is in force` } };
      }
      await ports.suspensionsChanged(ports.suspensions.list());
      ports.told?.resumed(ended);
      // Mail the suspension held (also before a restart) goes now, not at the suspension's end.
      const released = await ports.flush({ [target]: name } as Selector);
      const extra = await done('resume', { [target]: name }, remote, 'ok', { key: suspensionKey(ended), ...released });
      return { status: 200, body: { resumed: suspensionView(ended, now()), released, ...extra } };
    },
    async flush(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = flushBody.safeParse(body);
      if (!parsed.success) return refused('flush', parsed.error);
      const selector = selectorOf(parsed.data);
      const flushed = await ports.flush(selector as Selector);
      const extra = await done('flush', selector, remote, 'ok', { ...flushed });
      return { status: 200, body: { flushed: selector, ...flushed, ...extra } };
    },
    async bounce(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = bounceBody.safeParse(body);
      if (!parsed.success) return refused('bounce', parsed.error);
      const selector = selectorOf(parsed.data);
      const bounced = await ports.bounce(selector as Selector, parsed.data.reason);
      const extra = await done('bounce', selector, remote, 'ok', { ...bounced, reason: parsed.data.reason });
      return { status: 200, body: { bounced: selector, reason: parsed.data.reason, ...bounced, ...extra } };
    },
    async warmup(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = warmupBody.safeParse(body);
      if (!parsed.success) return refused('warmup', parsed.error);
      const { source, action, days = 0 } = parsed.data;
      if (!ports.warmup(source, action, days)) {
        await done('warmup', { source }, remote, 'not-found', { action });
        return { status: 404, body: { error: `no source "${source}" is warming up (egress.sources[].warmup)` } };
      }
      const extra = await done('warmup', { source }, remote, 'ok', { action, ...(action === 'skip' ? { days } : {}) });
      return { status: 200, body: { warmup: { source, action, ...(action === 'skip' ? { days } : {}) }, ...extra } };
    },
    async suppressAdd(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = suppressAddBody.safeParse(body);
      if (!parsed.success) return refused('suppress-add', parsed.error);
      const { domain, address, duration: forMs, reason } = parsed.data;
      const entry = ports.suppressionList.add(domain, address, 'admin', reason, forMs);
      const extra = await done('suppress-add', { domain, address }, remote, 'ok', { until: new Date(entry.until).toISOString(), reason });
      return { status: 200, body: { suppressed: { domain, address, until: new Date(entry.until).toISOString(), reason }, ...extra } };
    },
    async suppressRemove(body: unknown, remote: string | undefined): Promise<Answer> {
      const parsed = suppressRemoveBody.safeParse(body);
      if (!parsed.success) return refused('suppress-remove', parsed.error);
      const { domain, address } = parsed.data;
      const removed = ports.suppressionList.remove(domain, address);
      await done('suppress-remove', { domain, address }, remote, removed ? 'ok' : 'not-found', {});
      return removed ? { status: 200, body: { removed: { domain, address } } } : { status: 404, body: { error: `${address} is not suppressed for ${domain}` } };
    },
    list(): Answer {
      return { status: 200, body: { suspensions: ports.suspensions.list().map((s) => suspensionView(s, now())) } };
    },
  };
}

export type Writes = ReturnType<typeof createWrites> & { readonly suspensions: Suspensions; readonly audit: Audit };

/** The write calls with their state in `dir` (admin.state_dir): the suspensions read now, the audit log opened. */
export function openWrites(dir: string, ports: Omit<WritePorts, 'suspensions' | 'audit'>, clock: Clock, log: Logger): Writes {
  const suspensions = openSuspensions(dir, clock, log);
  const audit = openAudit(dir, clock, log);
  return { ...createWrites({ ...ports, suspensions, audit }, () => clock.now()), suspensions, audit };
}
