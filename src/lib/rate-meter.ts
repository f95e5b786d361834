/**
 * Events per second over a sliding window of one-second slots: a ring of counts and the newest
 * slot written, 240 bytes for a minute, and an idle meter simply reads zero. Shaping keeps two
 * per path that delivered in the last hour, and takes the level an adaptive change starts from
 * from them.
 */
export class RateMeter {
  readonly #counts: Uint32Array;
  /** The newest slot (seconds since the epoch) the ring holds; older ones follow it backwards. */
  #last = -1;

  constructor(slots = 60) {
    this.#counts = new Uint32Array(slots);
  }

  add(now: number, n = 1): void {
    const slot = Math.floor(now / 1000);
    const size = this.#counts.length;
    if (slot > this.#last) {
      // Slots skipped since the last write held nothing.
      for (let s = Math.max(this.#last + 1, slot - size + 1); s <= slot; s++) this.#counts[s % size] = 0;
      this.#last = slot;
    } else if (slot <= this.#last - size) {
      return; // older than the window
    }
    this.#counts[slot % size] = (this.#counts[slot % size] as number) + n;
  }

  /** Events in the window, up to and including `now`'s second. */
  total(now: number): number {
    const slot = Math.floor(now / 1000);
    const size = this.#counts.length;
    let total = 0;
    for (let s = Math.max(0, slot - size + 1, this.#last - size + 1); s <= Math.min(slot, this.#last); s++) total += this.#counts[s % size] as number;
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
