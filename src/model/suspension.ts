import type { SiteName } from './ids.ts';
import { localReply, type SmtpReply } from './reply.ts';

/**
 * An operator's suspension of a destination (POST /api/v1/suspend): mail for a domain, or for
 * every domain a site (an MX host set) serves, waits in the queue untried until `until` or a
 * resume. Admin keeps the list (src/admin/suspensions.ts); the queue asks it before each attempt.
 */
export interface Suspension {
  readonly target: 'domain' | 'site';
  /** A lower-case domain, or a site as the sites view names it: its MX hosts, sorted, joined by commas. */
  readonly name: string;
  readonly reason: string;
  readonly since: number;
  readonly until: number;
}

/** The queue's held list for a suspension's mail: apart from its path's, so a path with room does not take it back only to hold it again. */
export function suspensionKey(s: Pick<Suspension, 'target' | 'name'>): string {
  return `suspended:${s.target}:${s.name}`;
}

/** The suspension in force for a domain reached through a site, if any (a domain's own first). */
export function suspensionFor(list: readonly Suspension[], domain: string, site: SiteName, now: number): Suspension | undefined {
  let bySite: Suspension | undefined;
  for (const s of list) {
    if (s.until <= now) continue;
    if (s.target === 'domain' && s.name === domain) return s;
    if (s.target === 'site' && s.name === site) bySite = s;
  }
  return bySite;
}

/** What a suspended recipient's history records: 451 4.4.5, no attempt made. */
export function suspendedReply(s: Suspension): SmtpReply {
  const reason = s.reason === '' ? '' : `: ${s.reason}`;
  return localReply(451, '4.4.5', `${s.target} ${s.name} suspended by an operator until ${new Date(s.until).toISOString()}${reason}`, 'QUEUE');
}
