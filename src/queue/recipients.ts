import type { Logger } from 'pino';
import { domainOf, type Envelope, type RecipientState } from '../model/envelope.ts';
import type { Route } from '../model/outcome.ts';
import type { RouteAnswer } from '../model/route.ts';
import { formatReply, localReply, type SmtpReply } from '../model/reply.ts';
import type { Verdict } from './decide.ts';
import type { QueueJob } from './queue.ts';

/** Pure helpers of the queue's activation: grouping, routing answers as replies, what a state says. */

/** NOTIFY/ORCPT of the recipients attempted, when any of them has one. */
export function recipientDsn(envelope: Envelope, indexes: readonly number[]): Pick<QueueJob['envelope'], 'recipientDsn'> {
  const dsn = indexes.map((i) => {
    const r = envelope.recipients[i];
    return r?.notify || r?.orcpt ? { ...(r.notify ? { notify: r.notify } : {}), ...(r.orcpt ? { orcpt: r.orcpt } : {}) } : undefined;
  });
  return dsn.some(Boolean) ? { recipientDsn: dsn } : {};
}

/** A decision that sent the recipient back untried (a hold), not a deferral. */
export function isHold(d: { readonly verdict: Verdict } | undefined): boolean {
  return d?.verdict.kind === 'retry' && d.verdict.held !== undefined;
}

/** The path all of a message's pending recipients last went, if they all went one. */
export function pathOf(pending: readonly RecipientState[]): string | undefined {
  const path = pending[0]?.path;
  return path && pending.every((s) => s.path === path) ? path : undefined;
}

export function isUnreadable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'TERN_SPOOL_CORRUPT' || err instanceof SyntaxError;
}

export function groupByDomain(envelope: Envelope, due: readonly number[]): { domain: string; indexes: number[] }[] {
  const byDomain = new Map<string, number[]>();
  for (const i of due) {
    const address = (envelope.recipients[i] as { address: string }).address;
    const domain = domainOf(address);
    const list = byDomain.get(domain) ?? [];
    list.push(i);
    byDomain.set(domain, list);
  }
  // Delivery splits a group into transactions of its path's max_recipients_per_message.
  return [...byDomain].map(([domain, indexes]) => ({ domain, indexes }));
}

/** DNS answers as replies: NXDOMAIN and null MX are permanent; the rest wait. */
export function dnsReply(domain: string, route: Exclude<RouteAnswer, { kind: 'route' }>): SmtpReply {
  switch (route.kind) {
    case 'nxdomain':
      return localReply(550, '5.1.2', `Host or domain name not found: ${domain} (NXDOMAIN)`, 'DNS');
    case 'null-mx':
      return localReply(556, '5.1.10', `Domain ${domain} does not accept mail (null MX)`, 'DNS');
    case 'no-address':
      return localReply(451, '4.4.4', `Cannot reach ${domain}: ${route.detail}`, 'DNS');
    case 'temporary':
      return localReply(451, '4.4.3', `DNS lookup for ${domain} failed: ${route.detail}`, 'DNS');
  }
}

/** One line per recipient decision: what an operator greps for. */
export function logAttempt(log: Logger, envelope: Envelope, index: number, d: { readonly attempt: number; readonly route: Route; readonly verdict: Verdict }): void {
  const v = d.verdict;
  log.info({
    event: v.kind,
    queue_id: envelope.id,
    recipient: envelope.recipients[index]?.address,
    attempt: d.attempt,
    mx: d.route.mx,
    remote_ip: d.route.remoteIp,
    reply: formatReply(v.reply),
    ...(d.route.path ? { path: d.route.path } : {}),
    ...(v.kind === 'retry' ? { next_attempt: new Date(v.at).toISOString(), ...(v.held ? { held: v.held } : {}) } : {}),
    ...(v.kind === 'failed' ? { cause: v.cause } : {}),
    ...(v.kind === 'delivered' ? {} : { bounce: { reason: v.bounce.reason, class: v.bounce.class, category: v.bounce.category, type: v.bounce.type, rule: v.bounce.rule } }),
    ...(v.kind !== 'delivered' && v.bounce.mismatch ? { bounce_note: v.bounce.mismatch } : {}),
  }, `${v.kind} ${envelope.recipients[index]?.address}`);
}
