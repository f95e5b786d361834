/**
 * Group commit: items handed in while a batch is being written (and synced) go together in the
 * next batch, so N concurrent callers cost about two syncs, not N. One batch at a time; every
 * caller's promise settles with its batch.
 */
export function groupCommit<T>(writeBatch: (items: readonly T[]) => Promise<void>): (item: T) => Promise<void> {
  let waiting: { item: T; resolve(): void; reject(err: unknown): void }[] = [];
  let draining = false;

  async function drain(): Promise<void> {
    draining = true;
    while (waiting.length > 0) {
      const batch = waiting;
      waiting = [];
      try {
        await writeBatch(batch.map((w) => w.item));
        for (const w of batch) w.resolve();
      } catch (err) {
        for (const w of batch) w.reject(err);
      }
    }
    draining = false;
  }

  return (item) => new Promise<void>((resolve, reject) => {
    waiting.push({ item, resolve, reject });
    if (!draining) void drain();
  });
}
