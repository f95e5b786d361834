/** Time comes from a Clock so schedules can be tested without sleeping. */
export interface Timer { cancel(): void }

export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
  /** Run fn at (or soon after) whenMs; the timer does not keep the process alive. */
  at(whenMs: number, fn: () => void): Timer;
}

// setTimeout overflows past 2^31-1 ms (~24.8 days) and fires at once; clamp and re-arm instead.
const MAX_TIMEOUT = 2 ** 31 - 1;

export const systemClock: Clock = {
  now: () => Date.now(),
  at(whenMs, fn) {
    let handle: NodeJS.Timeout;
    const arm = (): void => {
      const delay = whenMs - Date.now();
      if (delay > MAX_TIMEOUT) {
        handle = setTimeout(arm, MAX_TIMEOUT);
      } else {
        handle = setTimeout(fn, Math.max(0, delay));
      }
      handle.unref();
    };
    arm();
    return { cancel: () => clearTimeout(handle) };
  },
};
