/**
 * Events per second over a sliding window of one-second slots: constant memory, and an idle
 * meter simply reads zero. Shaping takes the level an adaptive change starts from from it;
 * delivery, how fast a path drains its ready jobs.
 */
export class RateMeter {
  readonly #counts: Float64Array;
  readonly #stamps: Float64Array;

  constructor(slots = 60) {
    this.#counts = new Float64Array(slots);
    this.#stamps = new Float64Array(slots).fill(-1);
  }

  add(now: number, n = 1): void {
    const second = Math.floor(now / 1000);
    const i = second % this.#counts.length;
    if (this.#stamps[i] !== second) {
      this.#stamps[i] = second;
      this.#counts[i] = 0;
    }
    this.#counts[i] = (this.#counts[i] as number) + n;
  }

  /** Events in the window, up to and including `now`'s second. */
  total(now: number): number {
    const second = Math.floor(now / 1000);
    let total = 0;
    for (let i = 0; i < this.#counts.length; i++) {
      const stamp = this.#stamps[i] as number;
      if (stamp > second - this.#counts.length && stamp <= second) total += this.#counts[i] as number;
    }
    return total;
  }

  /** The average over the whole window: a path that just started reads low, on purpose (a cautious level). */
  perSecond(now: number): number {
    return this.total(now) / this.#counts.length;
  }
}

/** The highest value seen per second over a sliding window (connections open at once, say). */
export class PeakMeter {
  readonly #peaks: Float64Array;
  readonly #stamps: Float64Array;

  constructor(slots = 60) {
    this.#peaks = new Float64Array(slots);
    this.#stamps = new Float64Array(slots).fill(-1);
  }

  note(now: number, value: number): void {
    const second = Math.floor(now / 1000);
    const i = second % this.#peaks.length;
    if (this.#stamps[i] !== second) {
      this.#stamps[i] = second;
      this.#peaks[i] = value;
    } else if (value > (this.#peaks[i] as number)) {
      this.#peaks[i] = value;
    }
  }

  /** The highest value noted from `since` (within the window) to `now`. */
  maxSince(since: number, now: number): number {
    const second = Math.floor(now / 1000);
    const from = Math.max(Math.floor(since / 1000), second - this.#peaks.length + 1);
    let max = 0;
    for (let i = 0; i < this.#peaks.length; i++) {
      const stamp = this.#stamps[i] as number;
      if (stamp >= from && stamp <= second) max = Math.max(max, this.#peaks[i] as number);
    }
    return max;
  }
}
