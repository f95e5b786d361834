/**
 * Per-client-address counters across sessions, as Postfix's anvil keeps them: concurrent
 * sessions, new sessions per minute, failed AUTHs over a window. One tracker per SmtpServer (no
 * module state); addresses that go quiet are swept out, so memory follows the active clients.
 */
import { CLIENT_SWEEP_MS, RATE_WINDOW_MS, type SmtpLimits } from './limits.ts';
import { REPLIES, type ReplyEntry } from './replies.ts';

interface ClientRecord {
  sessions: number;
  /** Start times of admitted sessions within the rate window (at most the rate limit of them). */
  connects: number[];
  /** Times of failed AUTHs within the window (at most the failure limit of them). */
  authFailures: number[];
}

export interface ClientGate {
  /** Whether AUTH from this address is refused for now. */
  authLocked(address: string): boolean;
  authFailed(address: string): void;
}

export class ClientTracker implements ClientGate {
  readonly #limits: SmtpLimits;
  readonly #now: () => number;
  readonly #exempt: (address: string) => boolean;
  readonly #clients = new Map<string, ClientRecord>();
  #lastSweep: number;

  constructor(limits: SmtpLimits, now: () => number, exempt: (address: string) => boolean) {
    this.#limits = limits;
    this.#now = now;
    this.#exempt = exempt;
    this.#lastSweep = now();
  }

  /** Admit a new session (counted until `release`), or the 421 that turns it away. */
  admit(address: string): ReplyEntry | undefined {
    if (this.#exempt(address)) return undefined;
    const now = this.#now();
    this.#sweep(now);
    const client = this.#record(address);
    const { clientConnectionLimit: most, clientConnectionRate: rate } = this.#limits;
    if (most > 0 && client.sessions >= most) return REPLIES.tooManyFromAddress;
    if (rate > 0) {
      client.connects = recent(client.connects, now - RATE_WINDOW_MS);
      if (client.connects.length >= rate) return REPLIES.connectionRate;
      client.connects.push(now);
    }
    client.sessions++;
    return undefined;
  }

  release(address: string): void {
    const client = this.#clients.get(address);
    if (client) client.sessions--;
  }

  authLocked(address: string): boolean {
    const limit = this.#limits.authFailureLimit;
    const client = this.#clients.get(address);
    if (limit === 0 || !client || this.#exempt(address)) return false;
    client.authFailures = recent(client.authFailures, this.#now() - this.#limits.authFailureWindow);
    return client.authFailures.length >= limit;
  }

  authFailed(address: string): void {
    const limit = this.#limits.authFailureLimit;
    if (limit === 0 || this.#exempt(address)) return;
    const failures = this.#record(address).authFailures;
    failures.push(this.#now());
    // Concurrent sessions may all fail at once; only the newest `limit` decide anything.
    if (failures.length > limit) failures.shift();
  }

  #record(address: string): ClientRecord {
    let client = this.#clients.get(address);
    if (!client) {
      client = { sessions: 0, connects: [], authFailures: [] };
      this.#clients.set(address, client);
    }
    return client;
  }

  /** Forget addresses with no session and nothing left in their windows (about once a minute). */
  #sweep(now: number): void {
    if (now - this.#lastSweep < CLIENT_SWEEP_MS) return;
    this.#lastSweep = now;
    for (const [address, client] of this.#clients) {
      client.connects = recent(client.connects, now - RATE_WINDOW_MS);
      client.authFailures = recent(client.authFailures, now - this.#limits.authFailureWindow);
      if (client.sessions === 0 && client.connects.length === 0 && client.authFailures.length === 0) this.#clients.delete(address);
    }
  }
}

/** The times after `since` (the arrays are in time order and short). */
function recent(times: number[], since: number): number[] {
  const first = times.findIndex((t) => t > since);
  return first === 0 ? times : first === -1 ? [] : times.slice(first);
}
