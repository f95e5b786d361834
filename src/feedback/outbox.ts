import { mkdirSync } from 'node:fs';
import { appendFile, open, readdir, readFile, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createDirSync } from '../lib/dir-sync.ts';
import { TernError } from '../lib/errors.ts';
import { groupCommit } from '../lib/group-commit.ts';
import type { FeedbackEvent } from '../model/event.ts';

/** An event as the outbox keeps it: `n` orders every event ever appended. */
export interface StoredEvent {
  readonly n: number;
  readonly segment: number;
  readonly event: FeedbackEvent;
}

export interface OutboxOptions {
  readonly dir: string;
  readonly segmentBytes: number;
  /** Past this many bytes on disk the oldest events are dropped, loudly. */
  readonly maxBytes: number;
  /** Events older than this are dropped instead of sent. */
  readonly retentionMs: number;
  /** A fully acknowledged segment is deleted only once this says so (the KPI snapshot covers it). */
  readonly deletable?: (lastN: number) => boolean;
  readonly now: () => number;
  readonly onDrop: (count: number, why: string) => void;
}

export interface OutboxStats {
  readonly pending: number;
  readonly bytes: number;
  readonly segments: number;
}

export interface Outbox {
  /** Every event on disk, in order, acknowledged or not (recovery: ledger, KPI replay). Call once, first. */
  recover(visit: (stored: StoredEvent, acked: boolean) => void): Promise<void>;
  /** Resolves once the events are on disk (fdatasync, group-committed), with their numbers. */
  append(events: readonly FeedbackEvent[]): Promise<StoredEvent[]>;
  /** Up to `max` unacknowledged events not handed out before, oldest first. */
  take(max: number): Promise<StoredEvent[]>;
  /** Durably mark events as delivered to the endpoint; deletes segments that are all done. */
  ack(events: readonly StoredEvent[]): Promise<void>;
  /** Retry deletions that `deletable` refused earlier. */
  sweep(): Promise<void>;
  stats(): OutboxStats;
  close(): Promise<void>;
}

interface Segment {
  readonly seq: number;
  firstN: number;
  lastN: number;
  count: number;
  bytes: number;
  readonly acked: Set<number>;
  sealed: boolean;
  writer?: FileHandle;
  synced: boolean;
}

const NAME = /^(\d{12})\.log$/;
/** Appended events kept in memory for the sender; beyond this they are read back from disk. */
const READY_MAX = 10_000;

/**
 * The durable outbox (docs/feedback.md): events appended as JSON lines `{"n":…,"e":{…}}` to
 * segment files, acknowledgements appended to a `.ack` file beside each segment. A segment is
 * deleted when every event in it is acknowledged (or dropped by retention or the disk bound).
 * Only a bounded window of events is ever in memory; the rest is read back in order.
 */
export function openOutbox(options: OutboxOptions): Outbox {
  mkdirSync(options.dir, { recursive: true });
  const syncDir = createDirSync(options.dir);
  const segments = new Map<number, Segment>();
  let active: Segment | undefined;
  let nextSeq = 1;
  let nextN = 1;
  let ready: StoredEvent[] = [];
  let caughtUp = true;
  let cursorN = 1;
  let housekeeping: Promise<void> = Promise.resolve();

  const logPath = (seq: number): string => join(options.dir, `${String(seq).padStart(12, '0')}.log`);
  const ackPath = (seq: number): string => join(options.dir, `${String(seq).padStart(12, '0')}.ack`);

  async function recover(visit: (stored: StoredEvent, acked: boolean) => void): Promise<void> {
    const names = await readdir(options.dir);
    const seqs = names.flatMap((n) => {
      const m = NAME.exec(n);
      return m ? [Number(m[1])] : [];
    }).sort((a, b) => a - b);
    for (const seq of seqs) {
      nextSeq = Math.max(nextSeq, seq + 1);
      const acked = new Set((await readFile(ackPath(seq), 'latin1').catch(() => '')).split('\n').filter(Boolean).map(Number));
      const text = await readFile(logPath(seq), 'utf8');
      const segment: Segment = { seq, firstN: Infinity, lastN: 0, count: 0, bytes: Buffer.byteLength(text), acked, sealed: true, synced: true };
      for (const stored of parseSegment(seq, text)) {
        segment.firstN = Math.min(segment.firstN, stored.n);
        segment.lastN = Math.max(segment.lastN, stored.n);
        segment.count += 1;
        nextN = Math.max(nextN, stored.n + 1);
        visit(stored, acked.has(stored.n));
      }
      segments.set(seq, segment);
    }
    // Everything on disk is sent from the oldest unacknowledged event on.
    cursorN = Math.min(...[...segments.values()].map((s) => s.firstN), nextN);
    caughtUp = cursorN >= nextN;
    for (const segment of [...segments.values()]) maybeDelete(segment);
  }

  interface Appending { readonly events: readonly FeedbackEvent[]; stored: StoredEvent[] }

  const commit = groupCommit<Appending>(async (batches) => {
    const stored = batches.flatMap((b) => b.events.map((event) => ({ n: nextN++, event })));
    if (stored.length === 0) return;
    const text = stored.map((s) => `${JSON.stringify({ n: s.n, e: s.event })}\n`).join('');
    const bytes = Buffer.byteLength(text);
    const segment = await segmentFor(bytes);
    try {
      await (segment.writer as FileHandle).write(text, segment.bytes, 'utf8');
      await (segment.writer as FileHandle).datasync();
      if (!segment.synced) {
        await syncDir();
        segment.synced = true;
      }
    } catch (err) {
      seal(segment);
      throw new TernError('TERN_OUTBOX_WRITE', `cannot append events to the outbox: ${(err as Error).message}`, { cause: err });
    }
    segment.bytes += bytes;
    segment.count += stored.length;
    segment.firstN = Math.min(segment.firstN, stored[0]?.n ?? Infinity);
    segment.lastN = stored.at(-1)?.n ?? segment.lastN;
    const placed = stored.map((s) => ({ ...s, segment: segment.seq }));
    let at = 0;
    for (const b of batches) {
      b.stored = placed.slice(at, at + b.events.length);
      at += b.events.length;
    }
    offer(placed);
    enforceDiskBound();
  });

  /** New events go straight to the sender while it keeps up; otherwise it reads them back later. */
  function offer(stored: StoredEvent[]): void {
    if (caughtUp && ready.length + stored.length <= READY_MAX) {
      ready.push(...stored);
      cursorN = (stored.at(-1)?.n ?? cursorN - 1) + 1;
      return;
    }
    if (caughtUp) {
      caughtUp = false;
      cursorN = stored[0]?.n ?? cursorN;
    }
  }

  async function segmentFor(bytes: number): Promise<Segment> {
    if (active && active.bytes > 0 && active.bytes + bytes > options.segmentBytes) seal(active);
    if (!active) {
      const seq = nextSeq++;
      const writer = await open(logPath(seq), 'wx', 0o600);
      active = { seq, firstN: Infinity, lastN: 0, count: 0, bytes: 0, acked: new Set(), sealed: false, writer, synced: false };
      segments.set(seq, active);
    }
    return active;
  }

  function seal(segment: Segment): void {
    segment.sealed = true;
    if (active === segment) active = undefined;
    const writer = segment.writer;
    segment.writer = undefined;
    if (writer) void writer.close().catch(() => undefined);
    maybeDelete(segment);
  }

  async function take(max: number): Promise<StoredEvent[]> {
    const out = ready.splice(0, max);
    while (out.length < max && !caughtUp) {
      const from = cursorN;
      const loaded = await readFrom(from, max - out.length);
      cursorN = Math.max(cursorN, loaded.next);
      caughtUp = cursorN >= nextN;
      out.push(...loaded.events);
      if (loaded.events.length === 0 && loaded.next === from) break;
    }
    return dropExpired(out);
  }

  /**
   * Unacknowledged events with n ≥ from, up to `max`, read back from the segment files; `next` is
   * the first n not examined, so events appended while reading are picked up by the next call.
   */
  async function readFrom(from: number, max: number): Promise<{ events: StoredEvent[]; next: number }> {
    const events: StoredEvent[] = [];
    let next = from;
    const candidates = [...segments.values()].filter((s) => s.lastN >= from).sort((a, b) => a.seq - b.seq);
    for (const segment of candidates) {
      const text = await readFile(logPath(segment.seq), 'utf8').catch(() => '');
      for (const stored of parseSegment(segment.seq, text)) {
        if (stored.n < from) continue;
        if (events.length >= max) return { events, next: stored.n };
        next = stored.n + 1;
        if (!segment.acked.has(stored.n)) events.push(stored);
      }
    }
    return { events, next };
  }

  function dropExpired(events: StoredEvent[]): StoredEvent[] {
    const cutoff = options.now() - options.retentionMs;
    const expired = events.filter((s) => Date.parse(s.event.time) < cutoff);
    if (expired.length === 0) return events;
    options.onDrop(expired.length, 'older than feedback.retention');
    void ack(expired);
    const gone = new Set(expired);
    return events.filter((s) => !gone.has(s));
  }

  const writeAcks = groupCommit<readonly StoredEvent[]>(async (batches) => {
    const bySegment = new Map<number, number[]>();
    for (const s of batches.flat()) {
      const list = bySegment.get(s.segment) ?? [];
      list.push(s.n);
      bySegment.set(s.segment, list);
    }
    for (const [seq, ns] of bySegment) {
      const segment = segments.get(seq);
      if (!segment) continue;
      const handle = await open(ackPath(seq), 'a', 0o600);
      try {
        await handle.write(ns.map((n) => `${n}\n`).join(''));
        await handle.datasync();
      } finally {
        await handle.close();
      }
      for (const n of ns) segment.acked.add(n);
      maybeDelete(segment);
    }
  });

  function ack(events: readonly StoredEvent[]): Promise<void> {
    return events.length === 0 ? Promise.resolve() : writeAcks(events);
  }

  function maybeDelete(segment: Segment): void {
    if (!segment.sealed || segment.acked.size < segment.count) return;
    if (options.deletable && segment.count > 0 && !options.deletable(segment.lastN)) return;
    segments.delete(segment.seq);
    housekeeping = housekeeping.then(async () => {
      await rm(logPath(segment.seq), { force: true });
      await rm(ackPath(segment.seq), { force: true });
    }).catch(() => undefined);
  }

  /** Over the disk bound: the oldest sealed segments go, every event in them counted as dropped. */
  function enforceDiskBound(): void {
    let total = stats().bytes;
    for (const segment of [...segments.values()].sort((a, b) => a.seq - b.seq)) {
      if (total <= options.maxBytes || !segment.sealed) break;
      const unacked = segment.count - segment.acked.size;
      if (unacked > 0) options.onDrop(unacked, 'outbox over feedback.max_disk');
      for (let n = segment.firstN; n <= segment.lastN; n++) segment.acked.add(n);
      total -= segment.bytes;
      ready = ready.filter((s) => s.segment !== segment.seq);
      maybeDelete(segment);
    }
  }

  function stats(): OutboxStats {
    let pending = 0;
    let bytes = 0;
    for (const s of segments.values()) {
      pending += s.count - s.acked.size;
      bytes += s.bytes;
    }
    return { pending, bytes, segments: segments.size };
  }

  return {
    recover,
    async append(events) {
      const item: Appending = { events, stored: [] };
      await commit(item);
      return item.stored;
    },
    take,
    ack,
    async sweep() {
      for (const segment of [...segments.values()]) maybeDelete(segment);
      await housekeeping;
    },
    stats,
    async close() {
      await housekeeping;
      const writer = active?.writer;
      active = undefined;
      await writer?.close().catch(() => undefined);
    },
  };
}

/** A torn last line (a crash mid-append, never acknowledged to anyone) is skipped. */
function parseSegment(seq: number, text: string): StoredEvent[] {
  const out: StoredEvent[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    try {
      const { n, e } = JSON.parse(line) as { n: number; e: FeedbackEvent };
      if (Number.isInteger(n) && e && typeof e.id === 'string') out.push({ n, segment: seq, event: e });
    } catch {
      // torn
    }
  }
  return out;
}
