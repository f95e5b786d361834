import { createHmac, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { StoredEvent } from './outbox.ts';

export interface WebhookOptions {
  readonly url: string;
  readonly secret: string;
  readonly maxBatch: number;
  /** A partial batch waits at most this long for company. */
  readonly maxWaitMs: number;
  readonly timeoutMs: number;
  /** Batches in flight at once; each recipient's events always go through the same lane, in order. */
  readonly concurrency: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
}

export type WebhookResult = 'ok' | 'failed' | 'refused';

export interface WebhookDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly random?: () => number;
  take(max: number): Promise<StoredEvent[]>;
  ack(events: readonly StoredEvent[]): Promise<void>;
  onResult?(result: WebhookResult, events: number, ms: number): void;
}

export interface WebhookSender {
  start(): void;
  /** New events are in the outbox. */
  wake(): void;
  /** Stop sending; unacknowledged events stay in the outbox for the next start. */
  stop(): Promise<void>;
}

interface Lane {
  readonly index: number;
  queue: StoredEvent[];
  /**
   * The batch being sent or retried: the same events, body and batch id until acknowledged.
   * `posted`: the endpoint took it, only its acknowledgement is still to be written.
   */
  batch?: { events: StoredEvent[]; id: string; body: string; posted?: boolean };
  busy: boolean;
  failures: number;
  timer?: Timer;
  since: number;
}

/** Events taken from the outbox and not yet acknowledged, across lanes. */
const WINDOW_PER_LANE = 2_000;
/** A 4xx that is not 408/429 means the endpoint rejects what we send: keep trying, much more slowly. */
const REFUSED_FLOOR_MS = 60_000;

/**
 * Sends outbox events to one endpoint: batched POSTs of a JSON array, signed with
 * `X-Tern-Signature: sha256=<HMAC>` and named by `X-Tern-Batch-Id`; any 2xx acknowledges.
 */
export function createWebhookSender(options: WebhookOptions, deps: WebhookDeps): WebhookSender {
  const { clock, log } = deps;
  const random = deps.random ?? Math.random;
  const lanes: Lane[] = Array.from({ length: options.concurrency }, (_, index) => ({ index, queue: [], busy: false, failures: 0, since: 0 }));
  const window = WINDOW_PER_LANE * options.concurrency;
  let running = false;
  let filling = false;
  let refill = false;
  const inflight = new Set<AbortController>();
  const sending = new Set<Promise<void>>();

  const queued = (): number => lanes.reduce((n, l) => n + l.queue.length + (l.batch?.events.length ?? 0), 0);

  /** Pull from the outbox until the window is full, then see which lanes can send. */
  async function fill(): Promise<void> {
    if (filling) {
      refill = true;
      return;
    }
    filling = true;
    try {
      do {
        refill = false;
        while (running && queued() < window) {
          const events = await deps.take(Math.min(window - queued(), options.maxBatch * options.concurrency));
          if (events.length === 0) break;
          const now = clock.now();
          for (const stored of events) {
            const lane = lanes[laneOf(stored, options.concurrency)] as Lane;
            if (lane.queue.length === 0) lane.since = now;
            lane.queue.push(stored);
          }
        }
      } while (refill && running);
    } catch (err) {
      log.error({ err }, 'feedback: cannot read the outbox');
    } finally {
      filling = false;
    }
    for (const lane of lanes) consider(lane);
  }

  function consider(lane: Lane): void {
    if (!running || lane.busy || lane.timer) return;
    if (!lane.batch) {
      if (lane.queue.length === 0) return;
      const due = lane.since + options.maxWaitMs;
      if (lane.queue.length < options.maxBatch && clock.now() < due) {
        lane.timer = clock.at(due, () => {
          lane.timer = undefined;
          consider(lane);
        });
        return;
      }
      const events = lane.queue.splice(0, options.maxBatch);
      lane.since = clock.now();
      lane.batch = { events, id: randomUUID(), body: JSON.stringify(events.map((e) => e.event)) };
    }
    const sent = send(lane).finally(() => sending.delete(sent));
    sending.add(sent);
  }

  async function send(lane: Lane): Promise<void> {
    const batch = lane.batch;
    if (!batch) return;
    lane.busy = true;
    if (batch.posted) return recordAck(lane, batch);
    const started = clock.now();
    const outcome = await post(batch);
    if (!running && outcome.result !== 'ok') {
      // Stopping aborted the request: not a failure; the batch stays in the outbox for next time.
      lane.busy = false;
      return;
    }
    deps.onResult?.(outcome.result, batch.events.length, clock.now() - started);
    if (outcome.result === 'ok') {
      batch.posted = true;
      return recordAck(lane, batch);
    }
    lane.failures += 1;
    const delay = backoff(lane.failures, outcome.result === 'refused');
    const level = outcome.result === 'refused' || lane.failures % 10 === 1 ? 'error' : 'warn';
    log[level]({ url: options.url, batch_id: batch.id, events: batch.events.length, attempt: lane.failures, retry_in_ms: delay, status: outcome.status, err: outcome.error },
      outcome.result === 'refused'
        ? `feedback: the webhook refused a batch with ${outcome.status}; it is kept and retried slowly — fix the endpoint`
        : 'feedback: webhook delivery failed; the batch is kept and retried');
    retryLater(lane, delay);
  }

  /**
   * The endpoint has the batch: only the acknowledgement is left. One that cannot be written (a
   * full disk) is retried with the POST's back-off and never re-sent: a full disk must not turn
   * into a webhook storm of the same batch.
   */
  async function recordAck(lane: Lane, batch: NonNullable<Lane['batch']>): Promise<void> {
    try {
      await deps.ack(batch.events);
    } catch (err) {
      lane.failures += 1;
      const delay = backoff(lane.failures, false);
      if (lane.failures % 10 === 1) log.error({ err, batch_id: batch.id, attempt: lane.failures, retry_in_ms: delay }, 'feedback: the webhook took a batch but its acknowledgement cannot be recorded; retrying the write, not the POST');
      return retryLater(lane, delay);
    }
    lane.batch = undefined;
    lane.failures = 0;
    lane.busy = false;
    void fill();
    consider(lane);
  }

  function retryLater(lane: Lane, delay: number): void {
    lane.busy = false;
    lane.timer = clock.at(clock.now() + delay, () => {
      lane.timer = undefined;
      consider(lane);
    });
  }

  async function post(batch: NonNullable<Lane['batch']>): Promise<{ result: WebhookResult; status?: number; error?: string }> {
    const controller = new AbortController();
    inflight.add(controller);
    const timeout = setTimeout(() => controller.abort(new Error(`no answer in ${options.timeoutMs} ms`)), options.timeoutMs);
    try {
      const response = await fetch(options.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'tern',
          'x-tern-signature': `sha256=${createHmac('sha256', options.secret).update(batch.body).digest('hex')}`,
          'x-tern-batch-id': batch.id,
        },
        body: batch.body,
        signal: controller.signal,
      });
      await response.arrayBuffer().catch(() => undefined);
      if (response.status >= 200 && response.status < 300) return { result: 'ok', status: response.status };
      const refused = response.status >= 400 && response.status < 500 && response.status !== 408 && response.status !== 429;
      return { result: refused ? 'refused' : 'failed', status: response.status };
    } catch (err) {
      return { result: 'failed', error: (err as Error).message };
    } finally {
      clearTimeout(timeout);
      inflight.delete(controller);
    }
  }

  /** Exponential with ±20 % jitter; a refusing endpoint is retried no faster than once a minute. */
  function backoff(failures: number, refused: boolean): number {
    const exp = Math.min(options.backoffMaxMs, options.backoffBaseMs * 2 ** Math.min(failures - 1, 30));
    const base = refused ? Math.max(REFUSED_FLOOR_MS, exp) : exp;
    return Math.round(base * (0.8 + 0.4 * random()));
  }

  return {
    start() {
      running = true;
      void fill();
    },
    wake() {
      if (running) void fill();
    },
    async stop() {
      running = false;
      for (const lane of lanes) {
        lane.timer?.cancel();
        lane.timer = undefined;
      }
      for (const controller of inflight) controller.abort(new Error('stopping'));
      // An acknowledgement being written finishes, so a 2xx already received is not lost.
      await Promise.allSettled([...sending]);
    },
  };
}

/** Every event of one recipient goes through the same lane, so its order is kept. */
function laneOf(stored: StoredEvent, lanes: number): number {
  const key = `${stored.event.queue_id}|${stored.event.recipient}`;
  let h = 2166136261;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 16777619);
  return (h >>> 0) % lanes;
}
