import { mkdirSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { TernError } from '../lib/errors.ts';
import { prefixed } from '../lib/streams.ts';
import type { Envelope, RecipientState } from '../model/envelope.ts';
import type { QueueId } from '../model/ids.ts';
import type { JournalRecord } from '../model/journal.ts';
import { openFileStore, type FileWriter } from './file-store.ts';
import { openSegmentLog } from './segments.ts';

export interface SpoolOptions {
  readonly dir: string;
  readonly min_free: number;
  /** Messages up to this size are appended to the segment log; larger ones get a file each. */
  readonly inline_max: number;
  readonly segment_size: number;
  /** Bytes of recently accepted bodies kept in memory, so a first delivery attempt reads no disk. */
  readonly body_cache: number;
  /**
   * The part (0–1] of the free space above `min_free` this spool may fill between two statfs
   * measurements: 1/N with N shards on one file system, which see each other's writes only there.
   */
  readonly space_share?: number;
}

/** A message being received: write() its bytes in order, then commit() or abort(). */
export interface MessageWriter {
  /**
   * The next piece of the message (kept: the caller must not reuse it). Returns a promise when
   * the caller should wait before writing more: the message outgrew memory, is on its way to a
   * file of its own, and more than inline_max of it waits for the disk. It rejects if the file
   * cannot be written (later writes, and commit(), fail too).
   */
  write(piece: Buffer): Promise<void> | undefined;
  /** Resolves when the message is durable (fsynced, and its directory entry too). */
  commit(envelope: Envelope): Promise<void>;
  abort(): Promise<void>;
}

export interface LoadedMessage {
  readonly envelope: Envelope;
  readonly states: RecipientState[];
}

export interface Spool {
  begin(id: QueueId): Promise<MessageWriter>;
  load(id: QueueId): Promise<LoadedMessage>;
  /** The stored message, after `prefix` (header lines added at acceptance, such as DKIM-Signature). */
  openBody(id: QueueId, bodySize: number, prefix?: string): Readable;
  journal(id: QueueId, records: readonly JournalRecord[]): Promise<void>;
  /** Delete a finished message; `journalled: false` skips the journal (none was ever written). */
  remove(id: QueueId, journalled?: boolean): Promise<void>;
  /** Move a message (and journal) to <dir>/corrupt/ for inspection. */
  quarantine(id: QueueId): Promise<void>;
  /** Ids of every complete message on disk; removes debris of interrupted writes. Call once, first. */
  recover(): Promise<QueueId[]>;
  /** False when free space is below min_free: ingress answers 452 4.3.1 before DATA. */
  healthy(): Promise<boolean>;
  /** Wait for background tombstone writes and segment deletions. */
  settle(): Promise<void>;
  /** Settle and close open files; the spool is not used after this. */
  close(): Promise<void>;
}

const HEALTH_CACHE_MS = 2_000;

/**
 * Free space as the spool sees it between two statfs calls (which cost a system call and are
 * cached): what statfs said, less what was written since, less what sessions in flight hold
 * for their messages. Counting what is written and promised is what stops a burst accepted
 * inside the cache's two seconds from eating the reserve below `min_free` (ten 2 MB messages
 * left 864 KB of an 8 MB reserve before). The reserve belongs to journals, the event outbox and
 * acknowledgements, which are never refused for space (docs/operations.md, disk full).
 */
class SpaceBook {
  #free = Infinity;
  #writtenSince = 0;
  #promised = 0;
  readonly #minFree: number;
  readonly #share: number;

  constructor(minFree: number, share: number) {
    this.#minFree = minFree;
    this.#share = share;
  }

  /** A statfs answer; `writtenDuring` bytes were committed while it ran and may be counted in it. */
  measured(free: number, writtenDuring: number): void {
    this.#free = free;
    this.#writtenSince = writtenDuring;
  }

  get written(): number { return this.#writtenSince; }

  /** Room above the reserve for `more` bytes, after everything written and promised. */
  fits(more = 0): boolean {
    return (this.#free - this.#minFree) * this.#share - this.#writtenSince - this.#promised - more >= 0;
  }

  promise(bytes: number): void { this.#promised += bytes; }
  /** A message's promise ends: `stored` true when its bytes went to disk (committed). */
  settle(bytes: number, stored: boolean): void {
    this.#promised -= bytes;
    if (stored) this.#writtenSince += bytes;
  }
}

/**
 * Two stores behind one interface (ADR 0006). Fresh messages up to `inline_max` are buffered while
 * they arrive and appended to the segment log, one fdatasync per batch of concurrent commits.
 * Large messages stream into a file of their own. A message that needs a journal (some recipient
 * deferred) first moves out of its segment into a file, so segments hold only fresh mail and are
 * deleted within minutes, and long-deferred mail never pins one.
 */
export function openSpool(options: SpoolOptions, clock: Clock, log?: Logger): Spool {
  mkdirSync(options.dir, { recursive: true });
  const files = openFileStore(options.dir);
  const segments = openSegmentLog({ dir: options.dir, segmentBytes: options.segment_size, setAside: files.setAside });
  const bodies = new LRUCache<QueueId, Buffer>({ maxSize: Math.max(1, options.body_cache), sizeCalculation: (b) => Math.max(1, b.length) });
  let measuredAt = -Infinity;
  const space = new SpaceBook(options.min_free, options.space_share ?? 1);

  async function begin(id: QueueId): Promise<MessageWriter> {
    /** In memory until the message passes inline_max; after that, waiting for the file. */
    let chunks: Buffer[] = [];
    let held = 0;
    let size = 0;
    let file: FileWriter | undefined;
    let spilling: Promise<void> | undefined;
    let failed: Error | undefined;
    let promised = 0;
    const release = (stored: boolean): void => {
      space.settle(promised, stored);
      promised = 0;
    };

    /** Writes whatever is held to the file, until nothing is; one loop at a time. */
    async function spill(): Promise<void> {
      try {
        while (chunks.length > 0) {
          file ??= await files.begin(id);
          const pending = chunks;
          chunks = [];
          held = 0;
          await file.write(pending);
        }
      } catch (err) {
        failed = err as Error;
        chunks = [];
        held = 0;
        throw err;
      } finally {
        spilling = undefined;
      }
    }

    return {
      write(piece) {
        if (failed) return Promise.reject(failed);
        if (!space.fits(piece.length)) {
          failed = new TernError('TERN_SPOOL_FULL', `spool: ${id} would take the free space below spool.min_free (kept for journals and events)`);
          chunks = [];
          held = 0;
          return Promise.reject(failed);
        }
        space.promise(piece.length);
        promised += piece.length;
        size += piece.length;
        held += piece.length;
        chunks.push(piece);
        if (!file && !spilling && size <= options.inline_max) return undefined;
        if (!spilling) {
          spilling = spill();
          spilling.catch(() => undefined); // a caller not waiting hears of it at its next write or commit
        }
        // Pieces gather while a write runs, so writes are large; the caller waits only once more
        // than inline_max is held, which also bounds the memory a large message takes.
        return held > options.inline_max ? spilling : undefined;
      },
      async commit(envelope) {
        await spilling?.catch(() => undefined);
        if (failed) {
          release(false);
          throw failed instanceof TernError && failed.code === 'TERN_SPOOL_FULL' ? failed : new TernError('TERN_SPOOL_WRITE', `cannot store message ${id}: ${failed.message}`, { cause: failed });
        }
        const json = Buffer.from(JSON.stringify(envelope));
        try {
          if (file) return await file.commit(json, envelope.bodySize);
          const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
          await segments.append(id, json, body);
          bodies.set(id, body);
        } finally {
          release(true);
        }
      },
      async abort() {
        release(false);
        await spilling?.catch(() => undefined);
        chunks = [];
        await file?.abort();
      },
    };
  }

  async function load(id: QueueId): Promise<LoadedMessage> {
    if (!segments.has(id)) return files.load(id);
    const envelope = JSON.parse((await segments.readEnvelope(id)).toString('utf8')) as Envelope;
    // A message in a segment has no journal: the first decision that needs one moves it to a file.
    return { envelope, states: envelope.recipients.map(() => ({ attempts: 0, nextAt: 0 })) };
  }

  function openBody(id: QueueId, bodySize: number, prefix = ''): Readable {
    const head = prefix === '' ? [] : [Buffer.from(prefix, 'latin1')];
    // A fresh message is in memory: one stream of two buffers, the cheapest shape to send.
    const cached = bodies.get(id);
    if (cached) return Readable.from([...head, cached.subarray(0, bodySize)], { objectMode: false });
    if (segments.has(id)) {
      return Readable.from((async function* () {
        yield* head;
        yield (await segments.readBody(id)).subarray(0, bodySize);
      })(), { objectMode: false });
    }
    return prefixed(prefix, files.openBody(id, bodySize));
  }

  /** Copy a message out of its segment into a file of its own (durably), then tombstone it. */
  async function moveToFile(id: QueueId): Promise<void> {
    const body = bodies.get(id) ?? (await segments.readBody(id));
    await files.writeWhole(id, body, await segments.readEnvelope(id));
    segments.forget(id);
    bodies.delete(id);
  }

  async function journal(id: QueueId, records: readonly JournalRecord[]): Promise<void> {
    if (segments.has(id)) await moveToFile(id);
    await files.journal(id, records);
  }

  async function remove(id: QueueId, journalled = true): Promise<void> {
    bodies.delete(id);
    if (segments.has(id)) {
      segments.forget(id);
      return;
    }
    await files.remove(id, journalled);
  }

  async function quarantine(id: QueueId): Promise<void> {
    if (!segments.has(id)) return files.quarantine(id);
    const parts = await Promise.all([segments.readEnvelope(id), segments.readBody(id)]).catch(() => [] as Buffer[]);
    await files.setAside(id, Buffer.concat(parts));
    segments.forget(id);
    bodies.delete(id);
  }

  async function recover(): Promise<QueueId[]> {
    const inFiles = await files.recover();
    const inSegments = await segments.recover((segment, offset, bytes) => {
      log?.warn({ segment, offset, bytes }, 'segment log: ignored bytes that do not form a complete record (an unacknowledged write cut short, or damage; kept in corrupt/)');
    });
    // A crash between moving a message to its file and tombstoning it leaves both: the file wins.
    const fileIds = new Set(inFiles);
    for (const id of inSegments) if (fileIds.has(id)) segments.forget(id);
    return [...new Set([...inFiles, ...inSegments])].sort();
  }

  async function healthy(): Promise<boolean> {
    const now = clock.now();
    if (now - measuredAt >= HEALTH_CACHE_MS) {
      measuredAt = now;
      const writtenBefore = space.written;
      try {
        const stats = await statfs(options.dir);
        space.measured(stats.bavail * stats.bsize, space.written - writtenBefore);
      } catch {
        space.measured(0, 0);
      }
    }
    return space.fits();
  }

  return { begin, load, openBody, journal, remove, quarantine, recover, healthy, settle: segments.settle, close: segments.close };
}
