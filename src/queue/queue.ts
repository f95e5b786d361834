import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { Envelope, RecipientState } from '../model/envelope.ts';
import type { QueueId, SiteName } from '../model/ids.ts';
import type { Operated } from '../model/selector.ts';
import { suspendedReply, suspensionKey, type Suspension } from '../model/suspension.ts';
import type { JournalRecord } from '../model/journal.ts';
import type { RouteAnswer } from '../model/route.ts';
import type { BounceClassification } from '../model/bounce.ts';
import type { AttemptOutcome, Route } from '../model/outcome.ts';
import { formatReply, type SmtpReply } from '../model/reply.ts';
import { errorKind, RepeatedLog } from '../lib/repeated-log.ts';
import { decide, expiredReply, outcomeReplies, verdictWithoutAttempt, type Verdict } from './decide.ts';
import { Arrivals } from './arrivals.ts';
import { MinHeap } from './heap.ts';
import { adminBounce, messageView, pickWaiting, type MessageView } from './operator.ts';
import { HeldLists, type HeldEntry } from './held.ts';
import { dnsReply, groupByDomain, isHold, isUnreadable, logAttempt, pathOf, recipientDsn } from './recipients.ts';
import type { RetryPolicy } from './retry.ts';

export interface QueueJob {
  readonly site: SiteName;
  readonly domain: string;
  readonly hosts: readonly { name: string; addresses: readonly string[] }[];
  readonly envelope: {
    sender: string;
    recipients: readonly string[];
    /** DSN parameters the upstream client gave per recipient (NOTIFY, ORCPT), relayed as given. */
    recipientDsn?: readonly ({ notify?: readonly string[]; orcpt?: string } | undefined)[];
    size: number;
    eightBit: boolean;
    envid?: string;
    ret?: string;
  };
  readonly openBody: () => Readable;
  /** The egress pool X-Tern-Meta named, if any (docs/egress.md). */
  readonly pool?: string;
}

/** A decision about one recipient, for logs, metrics and (later) events. */
export interface RecipientOutcome {
  readonly envelope: Envelope;
  readonly index: number;
  readonly attempt: number;
  readonly verdict: Verdict;
  readonly route: Route;
}

/** Everything the queue uses, passed in: it never reaches into other stages. */
export interface QueuePorts {
  load(id: QueueId): Promise<{ envelope: Envelope; states: RecipientState[] }>;
  /** Read a message to look at it (a flush choosing), without what `load` does before an attempt. */
  peek?(id: QueueId): Promise<{ envelope: Envelope; states: RecipientState[] }>;
  journal(id: QueueId, records: readonly JournalRecord[]): Promise<void>;
  /** `journalled: false` when no journal record was ever written for the message. */
  remove(id: QueueId, journalled: boolean): Promise<void>;
  /** Move an unreadable message out of the queue, kept for an operator to inspect. */
  quarantine(id: QueueId): Promise<void>;
  /** The bytes to send: any prepended header lines, then the stored message. */
  openBody(envelope: Envelope): Readable;
  route(domain: string): Promise<RouteAnswer>;
  deliver(job: QueueJob): Promise<AttemptOutcome>;
  /** Qualify a failed attempt (reason, class, type); its `retry` decides what happens next. */
  classify(reply: SmtpReply): BounceClassification;
  observe?(outcome: RecipientOutcome): void;
  /** The MAIL FROM to send with (a VERP return path, docs/bounces.md); without it, the envelope's sender. */
  returnPath?(envelope: Envelope, index: number): string;
  /** An operator's suspension in force for a domain reached through a site: its mail waits untried. */
  suspended?(domain: string, site: SiteName): Suspension | undefined;
  /**
   * Durably record an activation's decisions (the daemon writes feedback events) before the
   * spool forgets them: resolves before the journal is written or the message removed.
   */
  report?(outcomes: readonly RecipientOutcome[]): Promise<void>;
}

export interface QueueOptions {
  readonly retry: RetryPolicy;
  readonly maxActive: number;
  /** Recipients loaded at once: bounds memory when messages have many recipients. */
  readonly maxActiveRecipients: number;
  /** An activation running longer than this is abandoned by the watchdog and retried. */
  readonly stallAfter: number;
}

export interface QueueSnapshot {
  readonly scheduled: number;
  readonly active: number;
  readonly recipients: number;
}

export interface Queue {
  /** A message just made durable by ingress. */
  enqueue(envelope: Envelope): void;
  /** Messages found on disk at start; loads each to learn when it is next due. */
  recover(ids: readonly QueueId[]): Promise<void>;
  snapshot(): QueueSnapshot;
  /** When the oldest message in the queue arrived, to the minute (ms); undefined when it is empty. */
  oldestArrival(): number | undefined;
  /** Recipients waiting per path (the path of their last attempt; unknown until there was one). */
  queuedByPath(): Map<string, number>;
  /** Make every waiting message of a path due now (an adaptive rule fails its mail); how many. */
  expedite(path: string): number;
  /**
   * Make due now messages a path sent back without trying them (paused, or its ready queue full),
   * the earliest placed first, at most `max`: the path has room again (its ready queue ran low, or
   * the adaptive effect that held them ended) sooner than the pace they were placed by said.
   * Messages with a real deferral keep their back-off. How many.
   */
  release(path: string, max?: number): number;
  /**
   * Make due now every waiting message `match` picks from its envelope (an operator's flush),
   * all its pending recipients attempted; messages being attempted now are left alone. Reads each
   * waiting message from the spool. How many messages and recipients.
   */
  flush(match: Match): Promise<Operated>;
  /**
   * Fail every pending recipient of each waiting message `match` picks (an operator's bounce),
   * with cause "admin" and `reason` in the reply, as soon as it is activated. How many.
   */
  bounce(match: Match, reason: string): Promise<Operated>;
  /** One message as the queue holds it (GET /api/v1/messages/:id); undefined if not waiting here. */
  inspect(id: QueueId): Promise<MessageView | undefined>;
  start(): void;
  /** Stop activating messages; resolves when active ones are done or `graceMs` passes. */
  stop(graceMs: number): Promise<void>;
}

/**
 * `now`: made due by an action (expedite, release): every pending recipient is attempted, whatever
 * its own time. `heldIn`: every pending recipient was sent back untried (a hold), none deferred;
 * the held list it waits in: its path's, or a suspension's (apart, so a path with room does not
 * take it back). `bounce`: an operator bounced it: its pending recipients fail when it is
 * activated (the reason).
 * `gone`: no longer waiting here — popped on its own time (its place in the path's held list is
 * skipped), or released early (its heap entry stays until popped, and is skipped then).
 */
interface Scheduled extends HeldEntry { readonly id: QueueId; readonly pending: number; readonly path: string | undefined; readonly now?: boolean; readonly heldIn?: string; readonly bounce?: string }

/** Picks a waiting message for an operator's action from its envelope and pending recipients. */
type Match = (envelope: Envelope, pending: readonly number[]) => Promise<boolean>;
interface Active { readonly startedAt: number; readonly pending: number; abandoned: boolean }

const WATCHDOG_MS = 30_000;
/** The longest a path's full pool puts mail back behind what waits for the path. */
const MAX_BEHIND_MS = 300_000;
const RETRY_AFTER_FAULT_MS = 60_000;
/** Decisions that could not be written (a full disk) are written again this often. */
const REWRITE_AFTER_MS = 5_000;

/**
 * An activation's decisions not yet on disk: the events still to report, the journal records
 * still to write. They stay in memory (with the recipients' states) until written, and the
 * message's next activation writes them instead of attempting anyone again: a recipient that got
 * its 250 is never sent to twice because its journal or event could not be written yet.
 */
interface Unwritten {
  readonly envelope: Envelope;
  readonly states: RecipientState[];
  outcomes: readonly RecipientOutcome[];
  records: readonly JournalRecord[];
  readonly journalled: boolean;
  /** Every pending recipient was sent back untried (see Scheduled.heldIn). */
  readonly held: boolean;
  /** The held list to wait in, when not the path's (a suspension's). */
  readonly heldIn?: string | undefined;
}

export function createQueue(options: QueueOptions, ports: QueuePorts, deps: { clock: Clock; log: Logger; random?: () => number }): Queue {
  const { clock, log } = deps;
  const random = deps.random ?? Math.random;
  const heap = new MinHeap<Scheduled>();
  const active = new Map<QueueId, Active>();
  let queuedRecipients = 0;
  let activeRecipients = 0;
  const byPath = new Map<string, number>();
  let timer: { at: number; handle: Timer } | undefined;
  let watchdog: Timer | undefined;
  let running = false;
  const idleWaiters: (() => void)[] = [];
  const unwritten = new Map<QueueId, Unwritten>();
  // Held messages per path in the order they were placed (about the order they fall due), so a
  // path with room takes the next few without a pass over the whole heap.
  const heldByPath = new HeldLists<Scheduled>();
  /** Heap entries of released messages, not yet popped: not counted as scheduled. */
  let released = 0;
  const faults = new RepeatedLog(log, clock);
  /** Reading a message only to look at it (an operator's selector, GET messages/:id). */
  const peek = ports.peek ?? ports.load;
  /** Messages an operator flushed or bounced while they were being attempted: applied when rescheduled. */
  const afterAttempt = new Map<QueueId, { bounce?: string }>();
  const arrivals = new Arrivals();

  function schedule(id: QueueId, due: number, pending: number, path?: string, flags: { held?: boolean; heldIn?: string | undefined; now?: boolean } = {}): void {
    // An operator's flush or bounce that found the message in the middle of an attempt applies now.
    const asked = afterAttempt.get(id);
    afterAttempt.delete(id);
    if (asked) return void pushScheduled(clock.now(), { id, pending, path, now: true, ...asked });
    const heldIn = flags.held ? (flags.heldIn ?? path) : undefined;
    pushScheduled(due, { id, pending, path, ...(heldIn ? { heldIn } : {}), ...(flags.now ? { now: true } : {}) });
  }

  function pushScheduled(due: number, value: Scheduled): void {
    const { path, pending, heldIn } = value;
    heap.push(due, value);
    if (path) byPath.set(path, (byPath.get(path) ?? 0) + pending);
    if (heldIn) heldByPath.add(heldIn, value);
    arm();
  }

  function unscheduled(entry: Scheduled): void {
    if (!entry.path) return;
    const left = (byPath.get(entry.path) ?? 0) - entry.pending;
    if (left > 0) byPath.set(entry.path, left);
    else byPath.delete(entry.path);
  }

  function arm(): void {
    const top = heap.peek();
    if (!running || !top) return;
    if (timer && timer.at <= top.due) return;
    timer?.handle.cancel();
    const at = top.due;
    timer = { at, handle: clock.at(at, () => { timer = undefined; pump(); }) };
  }

  function pump(): void {
    if (!running) return;
    const now = clock.now();
    for (;;) {
      const top = heap.peek();
      if (top?.value.gone) {
        heap.pop();
        released--;
        continue;
      }
      if (!top || top.due > now || !hasRoomFor(top.value.pending)) break;
      heap.pop();
      if (top.value.heldIn) {
        top.value.gone = true;
        heldByPath.trim(top.value.heldIn);
      }
      unscheduled(top.value);
      activate(top.value.id, top.value.pending, undefined, top.value.now, top.value.bounce);
    }
    if (hasRoomFor(1)) arm();
  }

  /** The active window is bounded in messages and in recipients; one message always fits. */
  function hasRoomFor(recipients: number): boolean {
    return active.size < options.maxActive && (active.size === 0 || activeRecipients + recipients <= options.maxActiveRecipients);
  }

  function activate(id: QueueId, pending: number, fresh: { envelope: Envelope; states: RecipientState[] } | undefined, expedited = false, bounced?: string): void {
    const entry: Active = { startedAt: clock.now(), pending, abandoned: false };
    active.set(id, entry);
    activeRecipients += pending;
    void run(id, entry, fresh, expedited, bounced)
      .catch(async (err: unknown) => {
        if (entry.abandoned) return;
        if (isUnreadable(err)) {
          // Retrying a file that cannot be parsed would loop forever; set it aside instead.
          queuedRecipients -= entry.pending;
          arrivals.remove(id);
          log.error({ err, queue_id: id }, 'message unreadable; moved to the spool\'s corrupt/ folder');
          await ports.quarantine(id).catch((e: unknown) => log.error({ err: e, queue_id: id }, 'quarantine failed'));
          return;
        }
        const held = unwritten.get(id);
        if (held) {
          faults.error(`write:${errorKind(err)}`, { err, queue_id: id, retry_in_ms: REWRITE_AFTER_MS }, 'queue: cannot record delivery outcomes yet (disk full?); they are kept and the write is retried, the delivery is not');
          schedule(id, clock.now() + REWRITE_AFTER_MS, held.states.filter((s) => !s.final).length);
          return;
        }
        // Any other fault (disk, bug) must not strand the message: try again later.
        faults.error(errorKind(err), { err, queue_id: id }, 'queue fault; message rescheduled');
        schedule(id, clock.now() + RETRY_AFTER_FAULT_MS, entry.pending);
      })
      .finally(() => {
        if (active.get(id) === entry) {
          active.delete(id);
          activeRecipients -= entry.pending;
        }
        if (active.size === 0) for (const wake of idleWaiters.splice(0)) wake();
        pump();
      });
  }

  async function run(id: QueueId, entry: Active, fresh: { envelope: Envelope; states: RecipientState[] } | undefined, expedited: boolean, bounced: string | undefined): Promise<void> {
    const held = unwritten.get(id);
    const stuck = held ? await write(id, held).then(() => undefined, (err: unknown) => err ?? new Error('write failed')) : undefined;
    if (held && stuck === undefined) return;
    // Outcomes that cannot be written yet do not stop the recipients still due: they are tried
    // from the states in memory, which say who is done.
    const { envelope, states } = held ?? fresh ?? (await ports.load(id));
    const now = clock.now();
    const due = states.flatMap((s, i) => (!s.final && (expedited || s.nextAt <= now) ? [i] : []));
    if (stuck !== undefined && due.length === 0) throw stuck;
    const decisions = bounced !== undefined
      ? failAll(states, () => adminBounce(bounced))
      : now >= envelope.expiresAt ? failAll(states, expired) : await attemptDue(envelope, states, due);
    if (entry.abandoned) return;
    await settle(id, entry, envelope, states, decisions);
  }

  /** Every pending recipient failed without an attempt: validity ended, or an operator bounced it. */
  function failAll(states: RecipientState[], verdict: (s: RecipientState) => Verdict): Map<number, Decision> {
    const decisions = new Map<number, Decision>();
    states.forEach((s, i) => {
      if (!s.final) decisions.set(i, { attempt: s.attempts, route: {}, verdict: verdict(s) });
    });
    return decisions;
  }

  function expired(s: RecipientState): Verdict {
    const reply = expiredReply(s.lastReply);
    return { kind: 'failed', cause: 'expired', reply, bounce: ports.classify(reply) };
  }

  interface Decision { readonly attempt: number; readonly route: Route; readonly verdict: Verdict }

  async function attemptDue(envelope: Envelope, states: RecipientState[], due: readonly number[]): Promise<Map<number, Decision>> {
    const decisions = new Map<number, Decision>();
    const groups = groupByDomain(envelope, due);
    await Promise.all(groups.map(async ({ domain, indexes }) => {
      const outcome = await attemptGroup(envelope, domain, indexes);
      const unattempted = verdictWithoutAttempt(outcome, { expiresAt: envelope.expiresAt, classify: ports.classify, notBefore: behindTheRest(outcome) });
      const replies = outcomeReplies(outcome, indexes.length);
      const siblingAccepted = replies.some((r) => r.code >= 200 && r.code < 300);
      const now = clock.now();
      indexes.forEach((index, k) => {
        const state = states[index] as RecipientState;
        const attempt = state.attempts + 1;
        const reply = replies[k] as SmtpReply;
        const verdict = unattempted ?? decide(options.retry, { reply, attempt, now, expiresAt: envelope.expiresAt, random: random(), siblingAccepted, classify: ports.classify });
        const counted = !unattempted && (verdict.kind !== 'retry' || verdict.counts);
        decisions.set(index, { attempt: counted ? attempt : state.attempts, route: outcome.route, verdict });
      });
    }));
    return decisions;
  }

  /**
   * Mail a full path sent back goes behind what already waits in the queue for that path, at
   * the rate the path drains: each message comes back about once, not every few seconds. At most
   * MAX_BEHIND_MS: the rate may be a moment's (a probe), and the path may speed up.
   */
  function behindTheRest(outcome: AttemptOutcome): number | undefined {
    if (outcome.kind !== 'held' || !outcome.drainPerSecond || !outcome.route.path) return undefined;
    const waiting = byPath.get(outcome.route.path) ?? 0;
    const behind = Math.min(MAX_BEHIND_MS, (waiting / outcome.drainPerSecond) * 1000);
    return clock.now() + behind * (0.9 + 0.2 * random());
  }

  async function attemptGroup(envelope: Envelope, domain: string, indexes: readonly number[]): Promise<AttemptOutcome> {
    const route = await ports.route(domain);
    if (route.kind !== 'route') return { kind: 'site-unreachable', route: {}, reply: dnsReply(domain, route) };
    const suspension = ports.suspended?.(domain, route.site);
    if (suspension) return { kind: 'held', route: {}, reply: suspendedReply(suspension), until: suspension.until, reason: 'suspended', heldIn: suspensionKey(suspension) };
    return ports.deliver({
      site: route.site,
      domain,
      hosts: route.hosts,
      envelope: {
        // A null sender stays null: what a bounce of a bounce must not get is a return path.
        sender: ports.returnPath && envelope.sender !== '' ? ports.returnPath(envelope, indexes[0] as number) : envelope.sender,
        recipients: indexes.map((i) => (envelope.recipients[i] as { address: string }).address),
        ...recipientDsn(envelope, indexes),
        size: envelope.bodySize + Buffer.byteLength(envelope.prepend ?? ''),
        eightBit: envelope.eightBit,
        ...(envelope.envid ? { envid: envelope.envid } : {}),
        ...(envelope.ret ? { ret: envelope.ret } : {}),
      },
      openBody: () => ports.openBody(envelope),
      ...(typeof envelope.meta.pool === 'string' ? { pool: envelope.meta.pool } : {}),
    });
  }

  async function settle(id: QueueId, entry: Active, envelope: Envelope, states: RecipientState[], decisions: Map<number, Decision>): Promise<void> {
    // Journal records exist only if an earlier activation left a recipient pending.
    const journalled = states.some((s) => s.attempts > 0 || s.final !== undefined || s.lastReply !== undefined);
    const records: JournalRecord[] = [];
    const outcomes: RecipientOutcome[] = [];
    for (const [index, d] of decisions) {
      const state = states[index] as RecipientState;
      state.attempts = d.attempt;
      state.lastReply = d.verdict.reply;
      if (d.route.path) state.path = d.route.path;
      if (d.verdict.kind === 'retry') {
        state.nextAt = d.verdict.at;
        records.push({ t: 'retry', r: index, n: d.attempt, next: d.verdict.at, reply: d.verdict.reply, ...(d.route.path ? { p: d.route.path } : {}) });
      } else {
        state.final = d.verdict.kind === 'delivered' ? 'delivered' : 'failed';
        records.push({ t: 'final', r: index, n: d.attempt, v: state.final, reply: d.verdict.reply, ...(d.verdict.kind === 'failed' ? { cause: d.verdict.cause } : {}) });
      }
      logAttempt(log, envelope, index, d);
      const outcome = { envelope, index, attempt: d.attempt, verdict: d.verdict, route: d.route };
      ports.observe?.(outcome);
      outcomes.push(outcome);
    }
    const pending = states.filter((s) => !s.final);
    queuedRecipients -= entry.pending - pending.length;
    const held = pending.length > 0 && states.every((s, i) => s.final || isHold(decisions.get(i)));
    const heldIn = held ? heldListOf(decisions) : undefined;
    const prior = unwritten.get(id);
    const decided: Unwritten = prior
      ? { envelope, states, outcomes: [...prior.outcomes, ...outcomes], records: [...prior.records, ...records], journalled: prior.journalled, held, heldIn }
      : { envelope, states, outcomes, records, journalled, held, heldIn };
    unwritten.set(id, decided);
    await write(id, decided);
  }

  /** Report, then journal or remove; each step forgotten once done, so a retry does only the rest. */
  async function write(id: QueueId, w: Unwritten): Promise<void> {
    if (w.outcomes.length > 0) {
      await ports.report?.(w.outcomes);
      w.outcomes = [];
    }
    const pending = w.states.filter((s) => !s.final);
    if (pending.length === 0) {
      await ports.remove(id, w.journalled);
      arrivals.remove(id);
      unwritten.delete(id);
      afterAttempt.delete(id);
      return;
    }
    if (w.records.length > 0) {
      await ports.journal(id, w.records);
      w.records = [];
    }
    unwritten.delete(id);
    const nextDue = Math.min(...pending.map((s) => s.nextAt));
    schedule(id, Math.min(nextDue, w.envelope.expiresAt), pending.length, pathOf(pending), { held: w.held, heldIn: w.heldIn });
  }

  /** A suspension's held list when one held the message; else (undefined) the path's. */
  function heldListOf(decisions: Map<number, Decision>): string | undefined {
    for (const d of decisions.values()) if (d.verdict.kind === 'retry' && d.verdict.heldIn) return d.verdict.heldIn;
    return undefined;
  }

  /** After entries were made due now: the timer may be set for later than that. */
  function rearm(): void {
    timer?.handle.cancel();
    timer = undefined;
    arm();
  }

  /**
   * An operator's flush or bounce: the waiting messages `match` picks (read back from the spool)
   * are made due now, every pending recipient attempted (flush) or failed (bounce). A message in
   * the middle of an attempt gets the same once the attempt is decided (if anyone is left pending).
   */
  async function operate(match: Match, action: 'flush' | 'bounce', reason = ''): Promise<Operated> {
    const startedAt = clock.now();
    const busy = (id: QueueId): boolean => active.has(id) || unwritten.has(id);
    const ids = new Set([...heap.values().filter((v) => !v.gone).map((v) => v.id), ...active.keys(), ...unwritten.keys()]);
    const picked = await pickWaiting([...ids], async (id) => unwritten.get(id) ?? peek(id), match);
    const asked = action === 'bounce' ? { bounce: reason } : {};
    let recipients = 0;
    let later = 0;
    for (const [id, count] of picked) {
      if (!busy(id)) continue;
      afterAttempt.set(id, asked);
      recipients += count;
      later++;
    }
    // Held entries leave their lists as they do when popped; the heap moves the rest. A bounce
    // takes messages already due too: they may be waiting for room in the active window.
    const moved = heap.updateWhere((v) => picked.has(v.id) && !v.gone && !busy(v.id), clock.now(), (v) => {
      recipients += picked.get(v.id) ?? 0;
      if (v.heldIn) {
        v.gone = true;
        heldByPath.trim(v.heldIn);
      }
      const { gone: _gone, heldIn: _in, ...rest } = v;
      return { ...rest, now: true, ...asked };
    }, { evenIfDue: action === 'bounce' });
    const messages = moved + later;
    if (messages > 0) log.info({ action, messages, recipients, after_attempt: later, took_ms: clock.now() - startedAt }, `queue: ${action === 'flush' ? 'flushed' : 'bounced'} by an operator`);
    rearm();
    return { messages, recipients };
  }

  function runWatchdog(): void {
    const now = clock.now();
    for (const [id, entry] of active) {
      if (now - entry.startedAt <= options.stallAfter || entry.abandoned) continue;
      // Delivery's own timeouts should never let this happen; if they did, do not strand the
      // message: forget this activation and schedule a fresh one. Its late result is ignored.
      entry.abandoned = true;
      active.delete(id);
      activeRecipients -= entry.pending;
      log.error({ queue_id: id, running_ms: now - entry.startedAt }, 'watchdog: delivery attempt stalled; message rescheduled');
      schedule(id, now, entry.pending);
    }
    if (running) watchdog = clock.at(clock.now() + WATCHDOG_MS, runWatchdog);
  }

  return {
    enqueue(envelope) {
      const count = envelope.recipients.length;
      queuedRecipients += count;
      arrivals.add(envelope.id);
      const states = envelope.recipients.map(() => ({ attempts: 0, nextAt: 0 }));
      if (running && hasRoomFor(count) && (heap.peek()?.due ?? Infinity) > clock.now()) {
        activate(envelope.id, count, { envelope, states });
      } else {
        schedule(envelope.id, clock.now(), count);
      }
    },
    async recover(ids) {
      let next = 0;
      const worker = async (): Promise<void> => {
        while (next < ids.length) {
          const id = ids[next++] as QueueId;
          try {
            const { envelope, states } = await ports.load(id);
            const pending = states.filter((s) => !s.final);
            if (pending.length === 0) {
              await ports.remove(id, true);
              continue;
            }
            queuedRecipients += pending.length;
            arrivals.add(id);
            schedule(id, Math.min(envelope.expiresAt, ...pending.map((s) => s.nextAt)), pending.length, pathOf(pending));
          } catch (err) {
            if (isUnreadable(err)) {
              log.error({ err, queue_id: id }, 'cannot recover message; moved to the spool\'s corrupt/ folder');
              await ports.quarantine(id).catch((e: unknown) => log.error({ err: e, queue_id: id }, 'quarantine failed'));
            } else {
              // Readable later, perhaps (EMFILE, EIO): try again; its count is learnt when loaded.
              log.error({ err, queue_id: id }, 'cannot load message yet; retrying');
              arrivals.add(id);
              schedule(id, clock.now() + RETRY_AFTER_FAULT_MS, 0);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: 32 }, worker));
      log.info({ messages: ids.length, recipients: queuedRecipients }, 'queue recovered');
    },
    snapshot: () => ({ scheduled: heap.size - released, active: active.size, recipients: queuedRecipients }),
    oldestArrival: () => arrivals.oldest(),
    queuedByPath: () => new Map(byPath),
    expedite(path) {
      heldByPath.clear(path);
      const moved = heap.updateWhere((v) => v.path === path && !v.gone, clock.now(), (v) => ({ ...v, now: true }));
      if (moved > 0) log.info({ path, messages: moved }, 'queue: messages of a path made due now');
      rearm();
      return moved;
    },
    release(path, max = Infinity) {
      const taken = heldByPath.take(path, max);
      for (const entry of taken) {
        entry.gone = true;
        released++;
        unscheduled(entry);
        schedule(entry.id, clock.now(), entry.pending, entry.path, { now: true });
      }
      if (taken.length > 0) log.debug({ path, messages: taken.length }, 'queue: messages the path held back made due now (it has room)');
      return taken.length;
    },
    flush: (match) => operate(match, 'flush'),
    bounce: (match, reason) => operate(match, 'bounce', reason),
    async inspect(id) {
      const entry = heap.find((v) => v.id === id && !v.gone);
      const state = active.has(id) ? 'active' : entry ? (entry.value.heldIn ? 'held' : 'scheduled') : undefined;
      if (!state) return undefined;
      const loaded = unwritten.get(id) ?? (await peek(id));
      return messageView(loaded.envelope, loaded.states, { state, dueAt: entry?.due ?? clock.now(), now: !!entry?.value.now, ...(entry?.value.bounce !== undefined ? { bounce: entry.value.bounce } : {}) });
    },
    start() {
      running = true;
      watchdog = clock.at(clock.now() + WATCHDOG_MS, runWatchdog);
      pump();
    },
    async stop(graceMs) {
      running = false;
      timer?.handle.cancel();
      timer = undefined;
      watchdog?.cancel();
      if (active.size === 0) return;
      await new Promise<void>((resolve) => {
        const deadline = clock.at(clock.now() + graceMs, resolve);
        idleWaiters.push(() => {
          deadline.cancel();
          resolve();
        });
      });
    },
  };
}
