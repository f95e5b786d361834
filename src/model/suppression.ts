import { domainOf } from './envelope.ts';

/**
 * Suppression (docs/bounces.md, "Suppression"; opt-in): an address that hard-bounced or
 * complained is refused at RCPT, per sender domain, for a while, so a campaign tool that keeps
 * sending to it does not hurt the sender's reputation. The coordinator keeps the list; each
 * ingress checks a copy.
 */
export type SuppressionReason = 'hard-bounce' | 'complaint' | 'admin';

export interface SuppressionEntry {
  /** The envelope sender's domain the address is suppressed for. */
  readonly domain: string;
  readonly address: string;
  readonly reason: SuppressionReason;
  /** What put it there: the bounce's reply, a complaint's type, an operator's words. */
  readonly detail: string;
  readonly since: number;
  readonly until: number;
}

/** A change to the list, as shards are told it. */
export type SuppressionChange = { readonly add: readonly SuppressionEntry[] } | { readonly remove: readonly { readonly domain: string; readonly address: string }[] };

export const suppressionKey = (domain: string, address: string): string => `${domain.toLowerCase()}|${address.toLowerCase()}`;


/** A copy of the list that answers at RCPT, kept by the changes it is told. */
export class SuppressionCopy {
  readonly #entries = new Map<string, SuppressionEntry>();

  apply(change: SuppressionChange): void {
    if ('add' in change) for (const e of change.add) this.#entries.set(suppressionKey(e.domain, e.address), e);
    else for (const e of change.remove) this.#entries.delete(suppressionKey(e.domain, e.address));
  }

  /** The entry in force for mail from `sender` to `recipient`, if any. */
  find(sender: string, recipient: string, now: number): SuppressionEntry | undefined {
    const e = this.#entries.get(suppressionKey(domainOf(sender), recipient));
    return e && e.until > now ? e : undefined;
  }

  get size(): number { return this.#entries.size; }
}
