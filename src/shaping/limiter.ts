import { TokenBucket } from '../lib/token-bucket.ts';
import type { Rate } from '../lib/units.ts';
import type { Grant, GrantRequest, LimiterPort, PathSettings } from '../model/path.ts';

/**
 * The one owner of grants and releases: connection leases (at most max_connections open per
 * path, new ones paced by max_connection_rate) and message grants (paced by max_message_rate).
 * Asked in batches, answered at once: being limited is an answer with a time to ask again, never
 * a wait. Delivery in this process asks it directly; several delivery shards or a fleet sharing
 * Redis would ask the same questions of a different owner.
 */
interface Slot {
  settings: PathSettings;
  leases: number;
  messages: TokenBucket | undefined;
  connections: TokenBucket | undefined;
}

export class Limiter implements LimiterPort {
  readonly #slots = new Map<string, Slot>();
  readonly #now: () => number;

  constructor(now: () => number) {
    this.#now = now;
  }

  /** A path's limits from now on: lower ones hold for the next grant; leases already out stay out. */
  configure(path: string, settings: PathSettings): void {
    const slot = this.#slots.get(path);
    if (!slot) {
      const now = this.#now();
      this.#slots.set(path, { settings, leases: 0, messages: bucket(settings.max_message_rate, now), connections: bucket(settings.max_connection_rate, now) });
      return;
    }
    if (slot.settings === settings) return;
    const now = this.#now();
    slot.messages = rebucket(slot.messages, slot.settings.max_message_rate, settings.max_message_rate, now);
    slot.connections = rebucket(slot.connections, slot.settings.max_connection_rate, settings.max_connection_rate, now);
    slot.settings = settings;
  }

  acquire(requests: readonly GrantRequest[]): Grant[] {
    const now = this.#now();
    return requests.map((r) => {
      const slot = this.#slots.get(r.path);
      if (!slot || r.count <= 0) return { granted: 0 };
      return r.kind === 'connection' ? grantConnections(slot, r.count, now) : grantMessages(slot, r.count, now);
    });
  }

  release(path: string, connections: number): void {
    const slot = this.#slots.get(path);
    if (slot) slot.leases = Math.max(0, slot.leases - connections);
  }

  /** Message grants handed out and not used (a delivery shard's unused credit) go back. */
  refund(path: string, messages: number): void {
    this.#slots.get(path)?.messages?.giveBack(messages, this.#now());
  }

  leases(path: string): number {
    return this.#slots.get(path)?.leases ?? 0;
  }

  /** Drop an idle path's state (its pool is gone); its rates start afresh if it comes back. */
  forget(path: string): void {
    if ((this.#slots.get(path)?.leases ?? 0) === 0) this.#slots.delete(path);
  }
}

function grantConnections(slot: Slot, count: number, now: number): Grant {
  const room = Math.min(count, slot.settings.max_connections - slot.leases);
  if (room <= 0) return { granted: 0 };
  const paced = slot.connections ? slot.connections.takeUpTo(room, now) : { taken: room, wait: 0 };
  slot.leases += paced.taken;
  return paced.taken < room ? { granted: paced.taken, retryAt: now + paced.wait } : { granted: paced.taken };
}

function grantMessages(slot: Slot, count: number, now: number): Grant {
  if (!slot.messages) return { granted: count };
  const paced = slot.messages.takeUpTo(count, now);
  return paced.taken < count ? { granted: paced.taken, retryAt: now + paced.wait } : { granted: paced.taken };
}

function bucket(rate: Rate | undefined, now: number): TokenBucket | undefined {
  return rate ? new TokenBucket(rate, now) : undefined;
}

function rebucket(current: TokenBucket | undefined, before: Rate | undefined, after: Rate | undefined, now: number): TokenBucket | undefined {
  if (!after) return undefined;
  if (!current) return new TokenBucket(after, now);
  if (before?.count !== after.count || before.perMs !== after.perMs) current.setRate(after, now);
  return current;
}
