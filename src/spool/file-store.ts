import { createReadStream, mkdirSync, type ReadStream } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rename, rm, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { TernError } from '../lib/errors.ts';
import type { Envelope } from '../model/envelope.ts';
import { parseQueueId, type QueueId } from '../model/ids.ts';
import type { JournalRecord } from '../model/journal.ts';
import { createDirSync } from '../lib/dir-sync.ts';
import { decodeTrailer, encodeTrailer, TRAILER_LENGTH } from './format.ts';
import { encodeJournal, parseJournal, replayJournal } from './journal.ts';
import type { LoadedMessage } from './spool.ts';

/** A message file being written: append body bytes, then commit (durable) or abort. */
export interface FileWriter {
  write(chunks: readonly Buffer[]): Promise<void>;
  commit(envelopeJson: Buffer, bodySize: number): Promise<void>;
  abort(): Promise<void>;
}

/**
 * Messages as files (ADR 0002): `body ‖ envelope JSON ‖ trailer`, written to a temp name, fsynced,
 * renamed, directory fsynced; recipient journals beside them as `<id>.j`. Holds large messages
 * (streamed to disk as they arrive) and every message that has a journal, i.e. deferred mail.
 */
export interface FileStore {
  begin(id: QueueId): Promise<FileWriter>;
  /** Write a whole message at once (a deferred message leaving the segment log). */
  writeWhole(id: QueueId, body: Buffer, envelopeJson: Buffer): Promise<void>;
  load(id: QueueId): Promise<LoadedMessage>;
  openBody(id: QueueId, bodySize: number): ReadStream;
  journal(id: QueueId, records: readonly JournalRecord[]): Promise<void>;
  remove(id: QueueId, journalled: boolean): Promise<void>;
  quarantine(id: QueueId): Promise<void>;
  /** Keep bytes nobody can use for an operator to inspect: `<dir>/corrupt/<name>`. */
  setAside(name: string, bytes: Buffer): Promise<void>;
  recover(): Promise<QueueId[]>;
}

// Crockford base32: the last character of an id is random, so it spreads files over 32 folders.
const BUCKETS = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

export function openFileStore(dir: string): FileStore {
  const root = join(dir, 'msg');
  const syncs = new Map<string, () => Promise<void>>();
  for (const bucket of BUCKETS) {
    const path = join(root, bucket);
    mkdirSync(path, { recursive: true });
    syncs.set(bucket, createDirSync(path));
  }
  const bucketOf = (id: QueueId): string => id.slice(-1);
  const pathOf = (id: QueueId): string => join(root, bucketOf(id), id);
  const journalOf = (id: QueueId): string => `${pathOf(id)}.j`;

  async function begin(id: QueueId): Promise<FileWriter> {
    const tmp = join(root, bucketOf(id), `.tmp-${randomUUID()}`);
    const handle = await open(tmp, 'wx', 0o600).catch((err: unknown) => {
      throw new TernError('TERN_SPOOL_WRITE', `cannot create spool file: ${(err as Error).message}`, { cause: err });
    });
    let closed = false;
    const close = async (): Promise<void> => {
      if (!closed) {
        closed = true;
        await handle.close();
      }
    };
    return {
      async write(chunks) {
        await handle.writev(chunks as Buffer[]);
      },
      async commit(envelopeJson, bodySize) {
        try {
          await handle.write(Buffer.concat([envelopeJson, encodeTrailer(bodySize, envelopeJson.length)]), 0, undefined, bodySize);
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
        await close().catch(() => undefined);
        await rm(tmp, { force: true });
      },
    };
  }

  async function writeWhole(id: QueueId, body: Buffer, envelopeJson: Buffer): Promise<void> {
    const writer = await begin(id);
    try {
      await writer.write([body]);
    } catch (err) {
      await writer.abort();
      throw err;
    }
    await writer.commit(envelopeJson, body.length);
  }

  async function readEnvelope(id: QueueId): Promise<Envelope> {
    const handle: FileHandle = await open(pathOf(id), 'r');
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

  async function remove(id: QueueId, journalled: boolean): Promise<void> {
    // Not synced: if a crash forgets this unlink, the message is delivered again (at-least-once).
    await unlink(pathOf(id)).catch(ignoreMissing);
    if (journalled) await unlink(journalOf(id)).catch(ignoreMissing);
  }

  const corrupt = join(dir, 'corrupt');

  async function quarantine(id: QueueId): Promise<void> {
    await mkdir(corrupt, { recursive: true });
    await rename(pathOf(id), join(corrupt, id)).catch(ignoreMissing);
    await rename(journalOf(id), join(corrupt, `${id}.j`)).catch(ignoreMissing);
  }

  async function setAside(name: string, bytes: Buffer): Promise<void> {
    await mkdir(corrupt, { recursive: true });
    await writeFile(join(corrupt, name), bytes);
  }

  async function recover(): Promise<QueueId[]> {
    const ids: QueueId[] = [];
    for (const bucket of BUCKETS) {
      const path = join(root, bucket);
      const names = new Set(await readdir(path));
      for (const name of names) {
        if (name.startsWith('.tmp-')) {
          await rm(join(path, name), { force: true });
          continue;
        }
        const journalOwner = name.endsWith('.j') ? name.slice(0, -2) : undefined;
        if (journalOwner !== undefined) {
          if (!names.has(journalOwner)) await rm(join(path, name), { force: true });
          continue;
        }
        const id = parseQueueId(name);
        if (id) ids.push(id);
      }
    }
    return ids;
  }

  return {
    begin,
    writeWhole,
    load,
    openBody: (id, bodySize) => createReadStream(pathOf(id), { start: 0, end: bodySize - 1, highWaterMark: 64 * 1024 }),
    journal: (id, records) => appendFile(journalOf(id), encodeJournal(records)),
    remove,
    quarantine,
    setAside,
    recover,
  };
}

export function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
