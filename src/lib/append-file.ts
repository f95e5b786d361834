import { open, type FileHandle } from 'node:fs/promises';

/**
 * A small append-only side file (tombstones, acknowledgements) kept open between appends: an
 * `appendFile` per batch opens and closes the file each time, two extra thread-pool round trips
 * that the event loop pays for in wake-ups at a thousand batches a second.
 */
export class AppendFile {
  readonly path: string;
  #handle: Promise<FileHandle> | undefined;

  constructor(path: string) {
    this.path = path;
  }

  /** Append `text` (unsynced: it survives a process crash, not a power loss). */
  async append(text: string): Promise<void> {
    const opening = (this.#handle ??= open(this.path, 'a', 0o600));
    let handle: FileHandle;
    try {
      handle = await opening;
    } catch (err) {
      if (this.#handle === opening) this.#handle = undefined;
      throw err;
    }
    await handle.write(text);
  }

  async close(): Promise<void> {
    const opening = this.#handle;
    this.#handle = undefined;
    const handle = await opening?.catch(() => undefined);
    await handle?.close().catch(() => undefined);
  }
}
