import { open, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { TernError } from '../lib/errors.ts';
import { AppendFile } from '../lib/append-file.ts';
import { groupCommit } from '../lib/group-commit.ts';
import { openSegmentFiles } from '../lib/segment-files.ts';
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
  /** Mark events as delivered to the endpoint (written, not fsynced: a power loss only causes a re-send); deletes segments that are all done. */
  ack(events: readonly StoredEvent[]): Promise<void>;
  /**
   * Hand out again, from the oldest, every event not acknowledged: a new sender takes over from one
   * that was stopped with events taken and unacknowledged (a reload changed the endpoint).
   */
  rewind(): Promise<void>;
  /** Retry deletions that `deletable` refused earlier. */
  sweep(): Promise<void>;
  stats(): OutboxStats;
  /** How long events have waited with none acknowledged (0 when none wait): a wedged endpoint's clock. */
  stalledMs(): number;
  /** When the oldest event not yet acknowledged was appended (to a second); undefined when none waits. */
  oldestPendingAt(): number | undefined;
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
  acks?: AppendFile;
}

const NAME = /^(\d{12})\.log$/;
/** Appended events kept in memory for the sender; beyond this they are read back from disk. */
const READY_MAX = 10_000;
/** A backlog is read back this many bytes at a time, from where the last read stopped. */
const READ_CHUNK = 1_048_576;
/** Events appended closer in time than this share one time mark. */
const MARK_SPACING_MS = 1_000;
/** Past this many time marks (about a quarter of an hour of appends), an acknowledgement trims them. */
const MARKS_UNREAD = 1_024;

/** Events numbered from `n` on were appended at or after `at`: when, without a time per event in memory. */
interface TimeMark { readonly n: number; readonly at: number }

/**
 * The durable outbox (docs/feedback.md): events appended as JSON lines `{"n":…,"e":{…}}` to
 * segment files, acknowledgements appended to a `.ack` file beside each segment. A segment is
 * deleted when every event in it is acknowledged (or dropped by retention or the disk bound).
 * Only a bounded window of events is ever in memory; the rest is read back in order.
 */
export function openOutbox(options: OutboxOptions): Outbox {
  const segments = new Map<number, Segment>();
  const files = openSegmentFiles({
    dir: options.dir,
    suffix: '.log',
    segmentBytes: options.segmentBytes,
    onOpen: (seq) => segments.set(seq, { seq, firstN: Infinity, lastN: 0, count: 0, bytes: 0, acked: new Set(), sealed: false }),
    onSeal: (seq) => {
      const segment = segments.get(seq);
      if (!segment) return;
      segment.sealed = true;
      maybeDelete(segment);
    },
  });
  let nextN = 1;
  /** Appended events the sender has not taken yet, while it keeps up. */
  let ready: StoredEvent[] = [];
  /** Every event numbered below cursorN has been handed out (or skipped as acknowledged). */
  let cursorN = 1;
  /** When the sender is behind: the byte where reading the backlog resumes. */
  let readPos: { seq: number; offset: number } | undefined;
  let housekeeping: Promise<void> = Promise.resolve();
  /** The last acknowledgement, or when events began to wait after none did. */
  let progressAt = options.now();
  /** Ascending in n: at most one a second of appends; trimmed past the oldest event not acknowledged. */
  const marks: TimeMark[] = [];
  const mark = (n: number, at: number): void => {
    const last = marks.at(-1);
    if (!last || at - last.at >= MARK_SPACING_MS) marks.push({ n, at });
  };

  const logPath = (seq: number): string => files.path(seq);
  const ackPath = (seq: number): string => join(options.dir, `${String(seq).padStart(12, '0')}.ack`);
  const caughtUp = (): boolean => readPos === undefined;

  async function recover(visit: (stored: StoredEvent, acked: boolean) => void): Promise<void> {
    const names = await readdir(options.dir);
    const seqs = names.flatMap((n) => {
      const m = NAME.exec(n);
      return m ? [Number(m[1])] : [];
    }).sort((a, b) => a - b);
    for (const seq of seqs) {
      files.startAfter(seq);
      const acked = new Set((await readFile(ackPath(seq), 'latin1').catch(() => '')).split('\n').filter(Boolean).map(Number));
      const bytes = await readFile(logPath(seq));
      const segment: Segment = { seq, firstN: Infinity, lastN: 0, count: 0, bytes: bytes.length, acked, sealed: true };
      for (const { stored } of parseLines(seq, bytes)) {
        segment.firstN = Math.min(segment.firstN, stored.n);
        segment.lastN = Math.max(segment.lastN, stored.n);
        segment.count += 1;
        nextN = Math.max(nextN, stored.n + 1);
        if (!acked.has(stored.n)) mark(stored.n, Date.parse(stored.event.time) || options.now());
        visit(stored, acked.has(stored.n));
      }
      segments.set(seq, segment);
    }
    // Everything on disk is read again from the start, skipping what was acknowledged.
    cursorN = Math.min(nextN, ...[...segments.values()].map((s) => s.firstN));
    const first = seqs[0];
    if (first !== undefined && cursorN < nextN) readPos = { seq: first, offset: 0 };
    for (const segment of [...segments.values()]) maybeDelete(segment);
  }

  interface Appending { readonly events: readonly FeedbackEvent[]; stored: StoredEvent[] }

  const commit = groupCommit<Appending>(async (batches) => {
    const numbered = batches.flatMap((b) => b.events.map((event) => ({ n: nextN++, event })));
    if (numbered.length === 0) return;
    if (stats().pending === 0) progressAt = options.now();
    mark(numbered[0]?.n ?? nextN, options.now());
    const text = numbered.map((s) => `${JSON.stringify({ n: s.n, e: s.event })}\n`).join('');
    let placed: { seq: number; offset: number };
    try {
      placed = await files.append([Buffer.from(text)]);
    } catch (err) {
      throw new TernError('TERN_OUTBOX_WRITE', `cannot append events to the outbox: ${(err as Error).message}`, { cause: err });
    }
    const segment = segments.get(placed.seq) as Segment;
    segment.bytes += Buffer.byteLength(text);
    segment.count += numbered.length;
    segment.firstN = Math.min(segment.firstN, numbered[0]?.n ?? Infinity);
    segment.lastN = numbered.at(-1)?.n ?? segment.lastN;
    const stored = numbered.map((s) => ({ ...s, segment: placed.seq }));
    let at = 0;
    for (const b of batches) {
      b.stored = stored.slice(at, at + b.events.length);
      at += b.events.length;
    }
    offer(stored, placed);
    enforceDiskBound();
  });

  /** New events go straight to the sender while it keeps up; otherwise it reads them back later. */
  function offer(stored: StoredEvent[], placed: { seq: number; offset: number }): void {
    if (!caughtUp()) return;
    if (ready.length + stored.length <= READY_MAX) {
      ready.push(...stored);
      cursorN = (stored.at(-1)?.n ?? cursorN - 1) + 1;
      return;
    }
    readPos = { ...placed };
  }

  /** The take in progress: a rewind waits for it, so a read back does not move the cursor after. */
  let taking: Promise<unknown> = Promise.resolve();

  function take(max: number): Promise<StoredEvent[]> {
    const taken = (async () => {
      const out = ready.splice(0, max);
      if (out.length < max && !caughtUp()) out.push(...(await readBack(max - out.length)));
      return dropExpired(out);
    })();
    taking = taken.catch(() => undefined);
    return taken;
  }

  async function rewind(): Promise<void> {
    await taking;
    ready = [];
    const first = firstPending();
    const segment = [...segments.values()].sort((a, b) => a.seq - b.seq).find((s) => first !== undefined && s.firstN <= first && first <= s.lastN);
    cursorN = first ?? nextN;
    readPos = segment ? { seq: segment.seq, offset: 0 } : undefined;
  }

  /**
   * Unacknowledged events from the backlog, up to `max`, read from where the last read stopped:
   * a chunk at a time, never a whole segment again. Caught up once every numbered event is read.
   */
  async function readBack(max: number): Promise<StoredEvent[]> {
    const events: StoredEvent[] = [];
    while (readPos && events.length < max) {
      const segment = segments.get(readPos.seq);
      if (!segment) {
        // Dropped by the disk bound while we were behind: go on with the next one.
        if (!moveToSegmentAfter(readPos.seq)) break;
        continue;
      }
      const chunk = await readChunk(logPath(segment.seq), readPos.offset);
      let consumed = 0;
      for (const { stored, end } of parseLines(segment.seq, chunk)) {
        if (events.length >= max) break;
        consumed = end;
        cursorN = Math.max(cursorN, stored.n + 1);
        if (!segment.acked.has(stored.n)) events.push(stored);
      }
      readPos = { seq: segment.seq, offset: readPos.offset + consumed };
      // Nothing complete left here: a sealed segment is done (a torn last line never completes).
      if (consumed === 0 && !(segment.sealed && moveToSegmentAfter(segment.seq))) break;
    }
    if (cursorN >= nextN) readPos = undefined;
    return events;
  }

  function moveToSegmentAfter(seq: number): boolean {
    const next = Math.min(...[...segments.keys()].filter((s) => s > seq));
    if (!Number.isFinite(next)) return false;
    readPos = { seq: next, offset: 0 };
    return true;
  }

  function dropExpired(events: StoredEvent[]): StoredEvent[] {
    const cutoff = options.now() - options.retentionMs;
    const expired = events.filter((s) => Date.parse(s.event.time) < cutoff);
    if (expired.length === 0) return events;
    options.onDrop(expired.length, 'older than feedback.retention');
    // A failed write only means they are dropped again after a restart.
    ack(expired).catch(() => undefined);
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
      segment.acks ??= new AppendFile(ackPath(seq));
      try {
        // Unsynced, like the spool's tombstones: a power loss can only cause a re-send, same ids.
        await segment.acks.append(ns.map((n) => `${n}\n`).join(''));
      } catch (err) {
        // Dropped (disk bound, retention) while we wrote: its acknowledgements no longer matter.
        if (segments.get(seq) !== segment) continue;
        throw err;
      }
      for (const n of ns) segment.acked.add(n);
      maybeDelete(segment);
    }
    progressAt = options.now();
    // Marks are trimmed when the age is read (a scrape); with nobody reading, here.
    if (marks.length > MARKS_UNREAD) oldestPendingAt();
  });

  const acking = new Set<Promise<void>>();
  function ack(events: readonly StoredEvent[]): Promise<void> {
    if (events.length === 0) return Promise.resolve();
    const writing = writeAcks(events);
    const settled = writing.then(() => undefined, () => undefined);
    acking.add(settled);
    void settled.then(() => acking.delete(settled));
    return writing;
  }

  function maybeDelete(segment: Segment): void {
    if (!segment.sealed || segment.acked.size < segment.count) return;
    if (options.deletable && segment.count > 0 && !options.deletable(segment.lastN)) return;
    segments.delete(segment.seq);
    housekeeping = housekeeping.then(async () => {
      await segment.acks?.close();
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

  function oldestPendingAt(): number | undefined {
    const oldest = firstPending();
    if (oldest === undefined) return undefined;
    let keep = 0;
    while (keep + 1 < marks.length && (marks[keep + 1] as TimeMark).n <= oldest) keep++;
    marks.splice(0, keep);
    return marks[0]?.at;
  }

  /** The lowest event number not acknowledged: segments hold consecutive numbers, in order. */
  function firstPending(): number | undefined {
    for (const s of [...segments.values()].sort((a, b) => a.seq - b.seq)) {
      if (s.count === s.acked.size) continue;
      for (let n = s.firstN; n <= s.lastN; n++) if (!s.acked.has(n)) return n;
    }
    return undefined;
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
    rewind,
    ack,
    stalledMs: () => (stats().pending === 0 ? 0 : Math.max(0, options.now() - progressAt)),
    oldestPendingAt,
    async sweep() {
      for (const segment of [...segments.values()]) maybeDelete(segment);
      await housekeeping;
    },
    stats,
    async close() {
      await Promise.all(acking);
      await housekeeping;
      await files.close();
      for (const segment of segments.values()) await segment.acks?.close();
    },
  };
}

/**
 * Complete JSON lines of a segment (or a chunk of one) with the byte just past each; a torn last
 * line (a crash mid-append, never acknowledged to anyone) is skipped.
 */
function* parseLines(seq: number, bytes: Buffer): Generator<{ stored: StoredEvent; end: number }> {
  let start = 0;
  for (let nl = bytes.indexOf(10); nl !== -1; start = nl + 1, nl = bytes.indexOf(10, start)) {
    try {
      const { n, e } = JSON.parse(bytes.toString('utf8', start, nl)) as { n: number; e: FeedbackEvent };
      if (Number.isInteger(n) && e && typeof e.id === 'string') yield { stored: { n, segment: seq, event: e }, end: nl + 1 };
    } catch {
      // torn, then appended to: skip the line
    }
  }
}

async function readChunk(path: string, offset: number): Promise<Buffer> {
  const handle = await open(path, 'r').catch(() => undefined);
  if (!handle) return Buffer.alloc(0);
  try {
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, offset);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}
