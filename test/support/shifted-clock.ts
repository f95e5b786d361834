import type { Clock, Timer } from '../../src/lib/clock.ts';

/**
 * Real time plus an offset a test can jump forward by days: timers armed before a jump fire when
 * the shifted time reaches them (re-armed on every jump), so a daemon's midnight and its held
 * mail's release come when the test says, without waiting a day.
 */
export class ShiftedClock implements Clock {
  #offset = 0;
  readonly #timers = new Set<{ when: number; fn: () => void; handle?: NodeJS.Timeout }>();

  now(): number {
    return Date.now() + this.#offset;
  }

  at(when: number, fn: () => void): Timer {
    const timer: { when: number; fn: () => void; handle?: NodeJS.Timeout } = { when, fn };
    this.#timers.add(timer);
    this.#arm(timer);
    return {
      cancel: () => {
        clearTimeout(timer.handle);
        this.#timers.delete(timer);
      },
    };
  }

  /**
   * A clock at the same time with no timers: for a daemon started again, so timers the stopped
   * one left behind are not made due by the next jump.
   */
  fork(): ShiftedClock {
    const next = new ShiftedClock();
    next.jump(this.#offset);
    return next;
  }

  /** Move time on by `ms`; timers now due fire at once. */
  jump(ms: number): void {
    this.#offset += ms;
    for (const timer of this.#timers) {
      clearTimeout(timer.handle);
      this.#arm(timer);
    }
  }

  #arm(timer: { when: number; fn: () => void; handle?: NodeJS.Timeout }): void {
    const delay = Math.min(2 ** 31 - 1, Math.max(0, timer.when - this.now()));
    timer.handle = setTimeout(() => {
      if (timer.when > this.now()) return this.#arm(timer);
      this.#timers.delete(timer);
      timer.fn();
    }, delay);
    timer.handle.unref();
  }
}
