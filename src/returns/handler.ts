import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { FeedbackEvent } from '../model/event.ts';
import { findSent, sweepSent } from './ledger.ts';
import { eventsOfReturn, type ReturnedRecipient, type ReturnResult } from './receive.ts';
import { readReturnPath } from './verp.ts';

export interface ReturnHandlerDeps {
  readonly secret: string;
  /** The sent ledger's directory (every shard's files). */
  readonly dir: string;
  readonly keepMs: number;
  /** Whole message → what it says of each recipient (src/bounce: qualifyMessage). */
  readonly qualify: (raw: Buffer) => readonly ReturnedRecipient[];
  /** Make events durable (a shard's feedback: outbox, KPIs, webhook). */
  readonly record: (events: readonly FeedbackEvent[]) => Promise<void>;
  /** A complainer, for the suppression list (when it is on). */
  readonly complained?: (domain: string, address: string) => void;
  readonly count: (result: ReturnResult | 'forged') => void;
  readonly clock: Clock;
  readonly log: Logger;
}

const SWEEP_EVERY_MS = 3_600_000;
const RELOOK_MS = 1_000;

/** What the bounce listener calls: is a local part a return path, and a returned message for one. */
export function createReturnHandler(deps: ReturnHandlerDeps) {
  const { clock, log } = deps;
  let sweeper: Timer | undefined;
  const sweep = (): void => {
    void sweepSent(deps.dir, clock.now(), deps.keepMs).then((n) => n > 0 && log.info({ files: n }, 'returns: sent ledger hours past bounce.keep removed'));
    sweeper = clock.at(clock.now() + SWEEP_EVERY_MS, sweep);
  };
  return {
    start: sweep,
    stop: () => sweeper?.cancel(),
    known: (localPart: string): boolean => readReturnPath(localPart, deps.secret) !== undefined,
    refused: (): void => deps.count('forged'),
    async received(raw: Buffer, localPart: string): Promise<void> {
      const target = readReturnPath(localPart, deps.secret);
      if (!target) return deps.count('forged');
      // The ledger line may still be on its way (a bounce seconds after the 250): look once more.
      let sent = await findSent(deps.dir, target.queueId);
      if (sent.length === 0) {
        await new Promise<void>((resolve) => clock.at(clock.now() + RELOOK_MS, resolve));
        sent = await findSent(deps.dir, target.queueId);
      }
      const returned = eventsOfReturn(target, sent, deps.qualify(raw), clock.now());
      for (const result of returned.results) deps.count(result);
      if (returned.events.length > 0) await deps.record(returned.events);
      for (const c of returned.complainers) deps.complained?.(c.domain, c.address);
      log.info({ queue_id: target.queueId, results: returned.results, events: returned.events.map((e) => `${e.type} ${e.recipient}`) }, 'returns: a returned message read');
    },
  };
}
