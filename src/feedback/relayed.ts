import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { Envelope } from '../model/envelope.ts';
import { relayedEvents, type FeedbackEvent } from '../model/event.ts';

export interface RelayedRecorderDeps {
  readonly record: (events: readonly FeedbackEvent[]) => Promise<void>;
  /** Runs once the message's relayed events are durable (the daemon queues the message). */
  readonly onRecorded: (envelope: Envelope) => void;
  readonly clock: Clock;
  readonly log: Logger;
}

export interface RelayedRecorder {
  /** Record the message's relayed events in the background, retrying until they are durable. */
  accepted(envelope: Envelope): void;
  /** Messages whose events failed, or have been writing for over 5 s: ingress takes no new mail meanwhile. */
  waiting(): number;
  /**
   * Wait for recordings in flight; abandon retries (a restart re-derives them from the spool).
   * Messages accepted afterwards get one try; call stop() again to wait for those.
   */
  stop(): Promise<void>;
}

const FIRST_RETRY_MS = 1_000;
const MAX_RETRY_MS = 30_000;
const STALLED_MS = 5_000;

interface Recording { readonly since: number; failed: boolean; done: Promise<void> }

/**
 * The `250` waits only for the spool's fsync, not for the outbox's (docs/feedback.md): a
 * committed message whose relayed events were lost is found at recovery, never attempted, and
 * gets them then. The message is queued only after its events are durable, so `relayed` always
 * precedes its final event in the outbox. An outbox that cannot be written holds the message in
 * the spool, retried with backoff, instead of losing the event; meanwhile `waiting()` tells
 * ingress to refuse new mail, so the backlog cannot grow without bound.
 */
export function createRelayedRecorder(deps: RelayedRecorderDeps): RelayedRecorder {
  /** Recordings in flight: when each began, whether it has failed yet (waiting until it succeeds). */
  const recordings = new Set<Recording>();
  const waits = new Set<{ timer: Timer; wake: () => void }>();
  let stopped = false;

  async function recordUntilDurable(envelope: Envelope, recording: Recording): Promise<void> {
    for (let delay = FIRST_RETRY_MS; ; delay = Math.min(delay * 2, MAX_RETRY_MS)) {
      if (await recordOnce(envelope, stopped ? undefined : delay)) break;
      recording.failed = true;
      if (stopped || !(await pause(delay))) return;
    }
    deps.onRecorded(envelope);
  }

  async function recordOnce(envelope: Envelope, retryInMs: number | undefined): Promise<boolean> {
    try {
      await deps.record(relayedEvents(envelope, deps.clock.now()));
      return true;
    } catch (err) {
      deps.log.error({ err, queue_id: envelope.id, retry_in_ms: retryInMs }, 'cannot record relayed events; the message waits in the spool');
      return false;
    }
  }

  /** False when stop() cut the pause short. */
  function pause(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const wait = {
        timer: deps.clock.at(deps.clock.now() + ms, () => {
          waits.delete(wait);
          resolve(true);
        }),
        wake: () => resolve(false),
      };
      waits.add(wait);
    });
  }

  return {
    accepted(envelope) {
      const recording: Recording = { since: deps.clock.now(), failed: false, done: Promise.resolve() };
      recordings.add(recording);
      recording.done = recordUntilDurable(envelope, recording).finally(() => recordings.delete(recording));
    },
    waiting() {
      // A write that never returns (a hung disk) holds mail as surely as one that fails.
      const stalledBefore = deps.clock.now() - STALLED_MS;
      let count = 0;
      for (const r of recordings) if (r.failed || r.since < stalledBefore) count += 1;
      return count;
    },
    async stop() {
      stopped = true;
      for (const wait of waits) {
        wait.timer.cancel();
        wait.wake();
      }
      waits.clear();
      await Promise.all([...recordings].map((r) => r.done));
    },
  };
}
