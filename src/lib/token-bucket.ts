import type { Rate } from './units.ts';

/**
 * A rate limit as a token bucket: `take(now)` answers how long to wait before the next send,
 * 0 meaning "go now". Being limited is an answer, not an exception. Burst is one second's worth.
 */
export class TokenBucket {
  readonly #perMs: number;
  readonly #capacity: number;
  #tokens: number;
  #at: number;

  constructor(rate: Rate, now: number) {
    this.#perMs = rate.count / rate.perMs;
    this.#capacity = Math.max(1, Math.min(rate.count, this.#perMs * 1000));
    this.#tokens = this.#capacity;
    this.#at = now;
  }

  take(now: number): number {
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#at) * this.#perMs);
    this.#at = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return Math.ceil((1 - this.#tokens) / this.#perMs);
  }
}
