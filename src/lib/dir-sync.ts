import { open } from 'node:fs/promises';

/**
 * Group commit for directory fsync: a rename is durable only once its directory is synced, and
 * one fsync covers every rename that finished before it started. Callers that arrive while a
 * sync runs share the next one, so N concurrent messages cost about two directory syncs, not N.
 */
export function createDirSync(path: string): () => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;

  async function syncOnce(): Promise<void> {
    const handle = await open(path, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  }

  function sync(): Promise<void> {
    if (!running) {
      running = syncOnce().finally(() => {
        running = undefined;
      });
      return running;
    }
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = undefined;
        return sync();
      });
    return next;
  }
  return sync;
}
