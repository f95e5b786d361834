import type { Rate } from './units.ts';

/**
 * A rate limit as a token bucket: `take(now)` answers how long to wait before the next send,
 * 0 meaning "go now". Being limited is an answer, not an exception. Burst is one second's worth.
 */
export class TokenBucket {
  #perMs: number;
  #capacity: number;
  #tokens: number;
  #at: number;

  constructor(rate: Rate, now: number) {
    this.#perMs = rate.count / rate.perMs;
    this.#capacity = capacityOf(rate);
    this.#tokens = this.#capacity;
    this.#at = now;
  }

  take(now: number): number {
    const { taken, wait } = this.takeUpTo(1, now);
    return taken === 1 ? 0 : wait;
  }

  /** Up to `n` tokens at once; `wait`: ms until the next one when fewer were available. */
  takeUpTo(n: number, now: number): { taken: number; wait: number } {
    this.#refill(now);
    const taken = Math.min(n, Math.floor(this.#tokens));
    this.#tokens -= taken;
    if (taken === n) return { taken, wait: 0 };
    return { taken, wait: Math.ceil((1 - this.#tokens) / this.#perMs) };
  }

  /** Tokens taken and not used (a shard's unused credit) go back, up to the burst. */
  giveBack(n: number, now: number): void {
    this.#refill(now);
    this.#tokens = Math.min(this.#capacity, this.#tokens + n);
  }

  /** A new rate from now on; tokens saved up beyond the new burst are forfeit. */
  setRate(rate: Rate, now: number): void {
    this.#refill(now);
    this.#perMs = rate.count / rate.perMs;
    this.#capacity = capacityOf(rate);
    this.#tokens = Math.min(this.#tokens, this.#capacity);
  }

  #refill(now: number): void {
    this.#tokens = Math.min(this.#capacity, this.#tokens + Math.max(0, now - this.#at) * this.#perMs);
    this.#at = Math.max(this.#at, now);
  }
}

function capacityOf(rate: Rate): number {
  return Math.max(1, Math.min(rate.count, (rate.count / rate.perMs) * 1000));
}
