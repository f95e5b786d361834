import { open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { AppendFile } from '../lib/append-file.ts';
import { TernError } from '../lib/errors.ts';
import { groupCommit } from '../lib/group-commit.ts';
import { openSegmentFiles, SegmentAppendError } from '../lib/segment-files.ts';
import { parseQueueId, type QueueId } from '../model/ids.ts';
import { encodeRecord, RECORD_HEADER, scanSegment } from './segment-format.ts';

/**
 * The segment log (ADR 0006): fresh messages appended to one segment file at a time, one
 * fdatasync per batch of concurrent commits. A message leaves its segment by a tombstone (its id
 * appended, unsynced, to `<segment>.del`); a sealed segment with no live message left is deleted.
 */
export interface SegmentLog {
  /** Resolves once the record is durable. */
  append(id: QueueId, envelopeJson: Buffer, body: Buffer): Promise<void>;
  has(id: QueueId): boolean;
  readEnvelope(id: QueueId): Promise<Buffer>;
  readBody(id: QueueId): Promise<Buffer>;
  /** Tombstone: the message is done here (delivered, failed, or moved to a file of its own). */
  forget(id: QueueId): void;
  /** Index every live record on disk; returns their ids. Call once, before any append. */
  recover(onIgnoredBytes: (segment: string, offset: number, bytes: number) => void): Promise<QueueId[]>;
  /** Wait for pending tombstones and deletions. */
  settle(): Promise<void>;
  /** Settle, then close every file handle. */
  close(): Promise<void>;
}

export interface SegmentLogOptions {
  readonly dir: string;
  /** A segment is sealed, and a new one begun, once it holds this many bytes. */
  readonly segmentBytes: number;
  /** Keep bytes that cannot be trusted for an operator (the spool's corrupt/ folder). */
  readonly setAside: (name: string, bytes: Buffer) => Promise<void>;
}

interface Location { readonly segment: number; readonly envelopeOffset: number; readonly envelopeLength: number; readonly bodyLength: number }
interface Segment { readonly seq: number; live: number; sealed: boolean; reader?: Promise<FileHandle>; tombstones?: AppendFile }
interface Pending { readonly id: QueueId; readonly record: Buffer; readonly envelopeLength: number; readonly bodyLength: number }

const SEGMENT_NAME = /^(\d{12})\.log$/;

export function openSegmentLog(options: SegmentLogOptions): SegmentLog {
  const root = join(options.dir, 'seg');
  const index = new Map<QueueId, Location>();
  const segments = new Map<number, Segment>();
  const tombstones = new Map<number, QueueId[]>();
  let housekeeping: Promise<void> = Promise.resolve();
  let tombstoneFlushScheduled = false;
  const files = openSegmentFiles({
    dir: root,
    suffix: '.log',
    segmentBytes: options.segmentBytes,
    onOpen: (seq) => segments.set(seq, { seq, live: 0, sealed: false }),
    onSeal: (seq) => {
      const segment = segments.get(seq);
      if (!segment) return;
      segment.sealed = true;
      if (segment.live === 0) scheduleDelete(segment);
    },
  });

  const logPath = (seq: number): string => files.path(seq);
  const delPath = (seq: number): string => join(root, `${String(seq).padStart(12, '0')}.del`);

  const commit = groupCommit<Pending>(writeBatch);

  function append(id: QueueId, envelopeJson: Buffer, body: Buffer): Promise<void> {
    return commit({ id, record: encodeRecord(envelopeJson, body), envelopeLength: envelopeJson.length, bodyLength: body.length });
  }

  async function writeBatch(batch: readonly Pending[]): Promise<void> {
    let placed: { seq: number; offset: number };
    try {
      placed = await files.append(batch.map((p) => p.record));
    } catch (err) {
      // The batch may be partly on disk (its segment is sealed now): tombstone it, so a restart
      // does not deliver mail the client was told to send again.
      if (err instanceof SegmentAppendError) for (const p of batch) queueTombstone(err.seq, p.id);
      throw new TernError('TERN_SPOOL_WRITE', `cannot append to the segment log: ${(err as Error).message}`, { cause: err });
    }
    let at = placed.offset;
    for (const p of batch) {
      index.set(p.id, { segment: placed.seq, envelopeOffset: at + RECORD_HEADER, envelopeLength: p.envelopeLength, bodyLength: p.bodyLength });
      at += p.record.length;
    }
    (segments.get(placed.seq) as Segment).live += batch.length;
  }

  function has(id: QueueId): boolean {
    return index.has(id);
  }

  async function readAt(id: QueueId, part: 'envelope' | 'body'): Promise<Buffer> {
    const at = index.get(id);
    if (!at) throw new TernError('TERN_SPOOL_CORRUPT', `message ${id} is not in the segment log`);
    const segment = segments.get(at.segment) as Segment;
    segment.reader ??= open(logPath(segment.seq), 'r');
    const handle = await segment.reader;
    const length = part === 'envelope' ? at.envelopeLength : at.bodyLength;
    const position = part === 'envelope' ? at.envelopeOffset : at.envelopeOffset + at.envelopeLength;
    const buffer = Buffer.allocUnsafe(length);
    const { bytesRead } = await handle.read(buffer, 0, length, position);
    if (bytesRead !== length) throw new TernError('TERN_SPOOL_CORRUPT', `segment ${segment.seq} is shorter than its index says`);
    return buffer;
  }

  function forget(id: QueueId): void {
    const at = index.get(id);
    if (!at) return;
    index.delete(id);
    const segment = segments.get(at.segment) as Segment;
    segment.live -= 1;
    if (segment.live === 0 && segment.sealed) {
      scheduleDelete(segment);
      return;
    }
    queueTombstone(segment.seq, id);
  }

  function queueTombstone(seq: number, id: QueueId): void {
    const list = tombstones.get(seq) ?? [];
    list.push(id);
    tombstones.set(seq, list);
    if (tombstoneFlushScheduled) return;
    tombstoneFlushScheduled = true;
    setImmediate(() => {
      tombstoneFlushScheduled = false;
      enqueueHousekeeping(flushTombstones);
    });
  }

  /** One append per segment per tick. Unsynced: a forgotten tombstone means a duplicate, never a loss. */
  async function flushTombstones(): Promise<void> {
    const work = [...tombstones];
    tombstones.clear();
    for (const [seq, ids] of work) {
      const segment = segments.get(seq);
      if (!segment) continue;
      segment.tombstones ??= new AppendFile(delPath(seq));
      await segment.tombstones.append(ids.map((id) => `${id}\n`).join(''));
    }
  }

  function scheduleDelete(segment: Segment): void {
    segments.delete(segment.seq);
    tombstones.delete(segment.seq);
    enqueueHousekeeping(async () => {
      const reader = segment.reader;
      segment.reader = undefined;
      if (reader) await reader.then((h) => h.close()).catch(() => undefined);
      await segment.tombstones?.close();
      await rm(logPath(segment.seq), { force: true });
      await rm(delPath(segment.seq), { force: true });
    });
  }

  /** Tombstone appends and deletions run one at a time, so a deleted segment never regains a .del. */
  function enqueueHousekeeping(task: () => Promise<void>): void {
    housekeeping = housekeeping.then(task).catch(() => undefined);
  }

  async function settle(): Promise<void> {
    await new Promise((r) => setImmediate(r));
    await housekeeping;
  }

  async function recover(onIgnoredBytes: (segment: string, offset: number, bytes: number) => void): Promise<QueueId[]> {
    const names = await readdir(root);
    const seqs = names.flatMap((n) => {
      const m = SEGMENT_NAME.exec(n);
      return m ? [Number(m[1])] : [];
    }).sort((a, b) => a - b);
    for (const name of names) {
      // A .del whose segment is gone was left by a deletion cut short.
      const owner = name.endsWith('.del') ? name.replace(/\.del$/, '.log') : undefined;
      if (owner && !names.includes(owner)) await rm(join(root, name), { force: true });
    }
    const ids: QueueId[] = [];
    for (const seq of seqs) {
      files.startAfter(seq);
      ids.push(...(await recoverSegment(seq, onIgnoredBytes)));
    }
    return ids;
  }

  async function recoverSegment(seq: number, onIgnoredBytes: (segment: string, offset: number, bytes: number) => void): Promise<QueueId[]> {
    const bytes = await readFile(logPath(seq));
    const dead = new Set((await readFile(delPath(seq), 'latin1').catch(() => '')).split('\n'));
    const { records, validEnd } = scanSegment(bytes);
    if (validEnd < bytes.length) {
      onIgnoredBytes(logPath(seq), validEnd, bytes.length - validEnd);
      const tail = bytes.subarray(validEnd);
      // Zeros are what a cut-short batch leaves; anything else is kept for an operator.
      if (!tail.every((b) => b === 0)) await options.setAside(`segment-${String(seq).padStart(12, '0')}.tail`, tail);
    }
    const segment: Segment = { seq, live: 0, sealed: true };
    const ids: QueueId[] = [];
    for (const r of records) {
      const id = idOf(r.envelopeJson);
      if (!id) onIgnoredBytes(logPath(seq), r.envelopeOffset - RECORD_HEADER, r.envelopeJson.length + r.bodyLength + RECORD_HEADER);
      if (!id || dead.has(id)) continue;
      index.set(id, { segment: seq, envelopeOffset: r.envelopeOffset, envelopeLength: r.envelopeJson.length, bodyLength: r.bodyLength });
      segment.live += 1;
      ids.push(id);
    }
    segments.set(seq, segment);
    if (segment.live === 0) scheduleDelete(segment);
    return ids;
  }

  return {
    append,
    has,
    readEnvelope: (id) => readAt(id, 'envelope'),
    readBody: (id) => readAt(id, 'body'),
    forget,
    recover,
    settle,
    async close() {
      await settle();
      await files.close();
      for (const segment of segments.values()) {
        const reader = segment.reader;
        segment.reader = undefined;
        await reader?.then((h) => h.close()).catch(() => undefined);
        await segment.tombstones?.close();
      }
    },
  };
}

function idOf(envelopeJson: Buffer): QueueId | undefined {
  try {
    return parseQueueId(String((JSON.parse(envelopeJson.toString('utf8')) as { id?: unknown }).id));
  } catch {
    return undefined;
  }
}
