import { open, rename, stat, type FileHandle } from 'node:fs/promises';
import type { FeedbackEvent } from '../model/event.ts';

export interface EventLogOptions {
  readonly path: string;
  /** Rotate when the file passes this size: path → path.1 → … → path.<keep>. */
  readonly maxBytes: number;
  readonly keep: number;
}

export interface EventLog {
  write(events: readonly FeedbackEvent[]): Promise<void>;
  close(): Promise<void>;
}

/**
 * An append-only JSON-lines copy of every event, for operators (`feedback.log`). Not the
 * durable record — the outbox is — so it is not fsynced, and a crash may repeat a few lines.
 */
export function openEventLog(options: EventLogOptions): EventLog {
  let handle: FileHandle | undefined;
  let size = 0;
  let chain: Promise<void> = Promise.resolve();

  async function ensureOpen(): Promise<FileHandle> {
    if (!handle) {
      handle = await open(options.path, 'a', 0o640);
      size = (await stat(options.path)).size;
    }
    return handle;
  }

  async function rotate(): Promise<void> {
    await handle?.close();
    handle = undefined;
    for (let i = options.keep - 1; i >= 1; i--) await rename(`${options.path}.${i}`, `${options.path}.${i + 1}`).catch(() => undefined);
    await rename(options.path, `${options.path}.1`).catch(() => undefined);
  }

  async function write(events: readonly FeedbackEvent[]): Promise<void> {
    const text = events.map((e) => `${JSON.stringify(e)}\n`).join('');
    const h = await ensureOpen();
    await h.write(text);
    size += Buffer.byteLength(text);
    if (size >= options.maxBytes) await rotate();
  }

  return {
    write(events) {
      if (events.length === 0) return Promise.resolve();
      const next = chain.catch(() => undefined).then(() => write(events));
      chain = next;
      return next;
    },
    async close() {
      await chain.catch(() => undefined);
      await handle?.close();
      handle = undefined;
    },
  };
}
