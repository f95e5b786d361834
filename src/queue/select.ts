import { domainOf, type Envelope } from '../model/envelope.ts';
import type { RouteAnswer } from '../model/route.ts';
import { selectorKey, selectorValue, type Selector } from '../model/selector.ts';

/**
 * Whether a waiting message is one an operator's selector names: by queue id, by the
 * `X-Tern-Meta` campaign or delivery it was relayed with, or by a pending recipient's domain or
 * the site (MX host set) that domain is reached through, asked of DNS as delivery would.
 */
export function matchesSelector(selector: Selector, route: (domain: string) => Promise<RouteAnswer>): (envelope: Envelope, pending: readonly number[]) => Promise<boolean> {
  const value = selectorValue(selector);
  const domains = (envelope: Envelope, pending: readonly number[]): Set<string> =>
    new Set(pending.map((i) => domainOf((envelope.recipients[i] as { address: string }).address)));
  switch (selectorKey(selector)) {
    case 'queue_id':
      return async (envelope) => envelope.id === value;
    case 'campaign':
    case 'delivery': {
      const key = selectorKey(selector);
      return async (envelope) => envelope.meta[key] === value;
    }
    case 'domain':
      return async (envelope, pending) => domains(envelope, pending).has(value.toLowerCase());
    case 'site':
      return async (envelope, pending) => {
        for (const domain of domains(envelope, pending)) {
          const answer = await route(domain);
          if (answer.kind === 'route' && answer.site === value) return true;
        }
        return false;
      };
  }
}
