import { createReadStream, mkdirSync, type ReadStream } from 'node:fs';
import { appendFile, open, readdir, readFile, rename, rm, statfs, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import { TernError } from '../lib/errors.ts';
import type { Envelope, RecipientState } from '../model/envelope.ts';
import { parseQueueId, type QueueId } from '../model/ids.ts';
import { createDirSync } from './dir-sync.ts';
import { decodeTrailer, encodeTrailer, TRAILER_LENGTH } from './format.ts';
import type { JournalRecord } from '../model/journal.ts';
import { encodeJournal, parseJournal, replayJournal } from './journal.ts';

export interface SpoolOptions { readonly dir: string; readonly min_free: number }

/** A message being received: write the body to `stream`, then commit() or abort(). */
export interface MessageWriter {
  readonly stream: Writable;
  /** Append the envelope, fsync, rename into place, fsync the directory. Resolves when durable. */
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
  openBody(id: QueueId, bodySize: number): ReadStream;
  journal(id: QueueId, records: readonly JournalRecord[]): Promise<void>;
  /** Delete a finished message; `journalled: false` skips the journal (none was ever written). */
  remove(id: QueueId, journalled?: boolean): Promise<void>;
  /** Move a message (and journal) to <dir>/corrupt/ for inspection. */
  quarantine(id: QueueId): Promise<void>;
  /** Ids of every complete message on disk; removes debris of interrupted writes. */
  recover(): Promise<QueueId[]>;
  /** False when free space is below min_free: ingress answers 452 4.3.1 before DATA. */
  healthy(): Promise<boolean>;
}

// Crockford base32: the last character of an id is random, so it spreads files over 32 folders.
const BUCKETS = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const HEALTH_CACHE_MS = 2_000;

export function openSpool(options: SpoolOptions, clock: Clock): Spool {
  const root = join(options.dir, 'msg');
  const syncs = new Map<string, () => Promise<void>>();
  for (const bucket of BUCKETS) {
    const dir = join(root, bucket);
    mkdirSync(dir, { recursive: true });
    syncs.set(bucket, createDirSync(dir));
  }
  let health = { at: -Infinity, ok: true };

  const bucketOf = (id: QueueId): string => id.slice(-1);
  const pathOf = (id: QueueId): string => join(root, bucketOf(id), id);
  const journalOf = (id: QueueId): string => `${pathOf(id)}.j`;

  async function begin(id: QueueId): Promise<MessageWriter> {
    const tmp = join(root, bucketOf(id), `.tmp-${randomUUID()}`);
    const handle = await open(tmp, 'wx', 0o600).catch((err: unknown) => {
      throw new TernError('TERN_SPOOL_WRITE', `cannot create spool file: ${(err as Error).message}`, { cause: err });
    });
    const stream = handleWriter(handle);
    let closed = false;
    const close = async (): Promise<void> => {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    };
    return {
      stream,
      async commit(envelope) {
        try {
          const json = Buffer.from(JSON.stringify(envelope));
          await handle.write(Buffer.concat([json, encodeTrailer(envelope.bodySize, json.length)]), 0, undefined, envelope.bodySize);
          await handle.sync();
          await close();
          await rename(tmp, pathOf(id));
          await (syncs.get(bucketOf(id)) as () => Promise<void>)();
        } catch (err) {
          await close().catch(() => undefined);
          await rm(tmp, { force: true });
          throw new TernError('TERN_SPOOL_WRITE', `cannot store message ${id}: ${(err as Error).message}`, { cause: err });
        }
      },
      async abort() {
        stream.destroy();
        await close().catch(() => undefined);
        await rm(tmp, { force: true });
      },
    };
  }

  async function readEnvelope(id: QueueId): Promise<Envelope> {
    const handle = await open(pathOf(id), 'r');
    try {
      const { size } = await handle.stat();
      const trailerBytes = Buffer.alloc(TRAILER_LENGTH);
      await handle.read(trailerBytes, 0, TRAILER_LENGTH, Math.max(0, size - TRAILER_LENGTH));
      const trailer = decodeTrailer(trailerBytes);
      if (!trailer || trailer.bodyLength + trailer.envelopeLength + TRAILER_LENGTH !== size) {
        throw new TernError('TERN_SPOOL_CORRUPT', `message file ${id} has no valid trailer`);
      }
      const json = Buffer.alloc(trailer.envelopeLength);
      await handle.read(json, 0, trailer.envelopeLength, trailer.bodyLength);
      return JSON.parse(json.toString('utf8')) as Envelope;
    } finally {
      await handle.close();
    }
  }

  async function load(id: QueueId): Promise<LoadedMessage> {
    const envelope = await readEnvelope(id);
    const text = await readFile(journalOf(id), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return '';
      throw err;
    });
    return { envelope, states: replayJournal(envelope.recipients.length, parseJournal(text)) };
  }

  async function remove(id: QueueId, journalled = true): Promise<void> {
    // Not synced: if a crash forgets this unlink, the message is delivered again (at-least-once).
    await unlink(pathOf(id)).catch(ignoreMissing);
    // Most mail is delivered at the first attempt and never had a journal: skip a failing unlink.
    if (journalled) await unlink(journalOf(id)).catch(ignoreMissing);
  }

  async function quarantine(id: QueueId): Promise<void> {
    const dir = join(options.dir, 'corrupt');
    mkdirSync(dir, { recursive: true });
    await rename(pathOf(id), join(dir, id)).catch(ignoreMissing);
    await rename(journalOf(id), join(dir, `${id}.j`)).catch(ignoreMissing);
  }

  async function recover(): Promise<QueueId[]> {
    const ids: QueueId[] = [];
    for (const bucket of BUCKETS) {
      const dir = join(root, bucket);
      const names = new Set(await readdir(dir));
      for (const name of names) {
        if (name.startsWith('.tmp-')) {
          await rm(join(dir, name), { force: true });
          continue;
        }
        const journalOwner = name.endsWith('.j') ? name.slice(0, -2) : undefined;
        if (journalOwner !== undefined) {
          if (!names.has(journalOwner)) await rm(join(dir, name), { force: true });
          continue;
        }
        const id = parseQueueId(name);
        if (id) ids.push(id);
      }
    }
    return ids.sort();
  }

  async function healthy(): Promise<boolean> {
    const now = clock.now();
    if (now - health.at < HEALTH_CACHE_MS) return health.ok;
    try {
      const stats = await statfs(root);
      health = { at: now, ok: stats.bavail * stats.bsize >= options.min_free };
    } catch {
      health = { at: now, ok: false };
    }
    return health.ok;
  }

  return {
    begin,
    load,
    openBody: (id, bodySize) => createReadStream(pathOf(id), { start: 0, end: bodySize - 1, highWaterMark: 64 * 1024 }),
    journal: (id, records) => appendFile(journalOf(id), encodeJournal(records)),
    remove,
    quarantine,
    recover,
    healthy,
  };
}

/**
 * A Writable over a FileHandle that leaves the handle open, so commit() can append the envelope
 * and fsync. (FileHandle.createWriteStream with autoClose off keeps a reference that makes a
 * later close() wait forever.)
 */
function handleWriter(handle: FileHandle): Writable {
  return new Writable({
    highWaterMark: 64 * 1024,
    writev(chunks, done) {
      handle.writev(chunks.map((c) => c.chunk as Buffer)).then(() => done(), done);
    },
  });
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
