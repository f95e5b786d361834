import type { Clock, Timer } from './clock.ts';

/**
 * A small state file written a moment after a change, not on every change (many changes a
 * second come to one write), and never by two writes at once.
 */
export interface SaveSoon {
  /** A change was made: write within `delayMs`. */
  soon(): void;
  /** Cancel the pending write and write now, after any write in progress (at stop). */
  now(): Promise<void>;
}

export function saveSoon(clock: Clock, delayMs: number, write: () => Promise<void>): SaveSoon {
  let timer: Timer | undefined;
  let writing: Promise<void> = Promise.resolve();
  const queue = (): Promise<void> => (writing = writing.then(write, write));
  return {
    soon() {
      if (timer) return;
      timer = clock.at(clock.now() + delayMs, () => {
        timer = undefined;
        void queue();
      });
    },
    now() {
      timer?.cancel();
      timer = undefined;
      return queue();
    },
  };
}
