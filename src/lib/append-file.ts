import { open, type FileHandle } from 'node:fs/promises';

/**
 * A small append-only side file (tombstones, acknowledgements) kept open between appends: an
 * `appendFile` per batch opens and closes the file each time, two extra thread-pool round trips
 * that the event loop pays for in wake-ups at a thousand batches a second.
 */
export class AppendFile {
  readonly path: string;
  #handle: Promise<FileHandle> | undefined;
  #closed = false;
  /** An append failed part-way: the next one starts on a fresh line. */
  #torn = false;
  /** Appends run one at a time, so a line is never interleaved with another. */
  #last: Promise<unknown> = Promise.resolve();

  constructor(path: string) {
    this.path = path;
  }

  /** Append `text` (unsynced: it survives a process crash, not a power loss). */
  append(text: string): Promise<void> {
    // Never reopened once closed: the file may be about to be deleted with its segment.
    if (this.#closed) return Promise.reject(new Error(`${this.path}: appended to after close`));
    const run = this.#last.then(() => this.#write(text), () => this.#write(text));
    this.#last = run.catch(() => undefined);
    return run;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#last;
    const opening = this.#handle;
    this.#handle = undefined;
    const handle = await opening?.catch(() => undefined);
    await handle?.close().catch(() => undefined);
  }

  async #write(text: string): Promise<void> {
    const opening = (this.#handle ??= open(this.path, 'a', 0o600));
    let handle: FileHandle;
    try {
      handle = await opening;
    } catch (err) {
      if (this.#handle === opening) this.#handle = undefined;
      throw err;
    }
    // Short writes are continued; a failed one must not leave half a line for the next append
    // to extend into a wrong entry, so that one begins with a line break (readers skip blanks).
    let bytes = Buffer.from(this.#torn ? `\n${text}` : text, 'latin1');
    this.#torn = true;
    while (bytes.length > 0) {
      const { bytesWritten } = await handle.write(bytes);
      bytes = bytes.subarray(bytesWritten);
    }
    this.#torn = false;
  }
}
