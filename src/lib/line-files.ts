import { mkdir, open } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, Timer } from './clock.ts';

/**
 * JSON-lines files under one directory, appended in batches: lines added in one turn of the
 * event loop are written together, one append per file, batches in order. With `sync`, each
 * file is fdatasync'ed before the next batch (the sent ledger); without, a crash may lose the
 * last lines (a view that can be rebuilt, like the campaign log).
 */
export class LineFiles {
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #options: { readonly sync: boolean; readonly what: string };
  readonly #made = new Set<string>();
  #pending = new Map<string, string[]>();
  #timer: Timer | undefined;
  #writing: Promise<void> = Promise.resolve();

  constructor(dir: string, clock: Clock, log: Logger, options: { readonly sync: boolean; readonly what: string }) {
    this.#dir = dir;
    this.#clock = clock;
    this.#log = log;
    this.#options = options;
  }

  /** `file` is relative to the directory and may name a subdirectory. */
  add(file: string, line: string): void {
    const lines = this.#pending.get(file) ?? [];
    lines.push(line.endsWith('\n') ? line : `${line}\n`);
    this.#pending.set(file, lines);
    this.#timer ??= this.#clock.at(this.#clock.now(), () => void this.flush());
  }

  /** Write what is pending (also at stop). */
  flush(): Promise<void> {
    this.#timer?.cancel();
    this.#timer = undefined;
    const batch = this.#pending;
    this.#pending = new Map();
    this.#writing = this.#writing.then(async () => {
      for (const [file, lines] of batch) {
        const path = join(this.#dir, file);
        await this.#append(path, lines.join('')).catch((err: unknown) => this.#log.error({ err, file: path }, `cannot write ${this.#options.what}`));
      }
    });
    return this.#writing;
  }

  async #append(path: string, text: string): Promise<void> {
    const parent = dirname(path);
    if (!this.#made.has(parent)) {
      await mkdir(parent, { recursive: true });
      this.#made.add(parent);
    }
    const file = await open(path, 'a');
    try {
      await file.appendFile(text);
      if (this.#options.sync) await file.datasync();
    } finally {
      await file.close();
    }
  }
}
