import type { BounceClassification } from '../model/bounce.ts';
import type { PathObservation } from '../model/path.ts';
import type { SmtpReply } from '../model/reply.ts';
import { isThrottleOrBlock, type ReputationBook } from './reputation.ts';
import type { Warmup } from './warmup.ts';

/**
 * What delivery reports of a path, as egress keeps it: every source's history with every site
 * (delivered, deferred by reason, bounced by type, throttled), and for warming sources the
 * throttles and blocks that hold a ramp. What was sent is counted by warm-up before the attempt.
 */
export function egressObserver(warmup: Warmup, reputation: ReputationBook, classify: (reply: SmtpReply) => Pick<BounceClassification, 'category' | 'reason' | 'type' | 'retry'>) {
  return (path: { readonly source: string; readonly site: string }, observation: PathObservation): void => {
    if (observation.kind === 'delivered') return reputation.delivered(path.source, path.site, observation.recipients);
    if (observation.kind !== 'reply') return;
    const bounce = classify(observation.reply);
    reputation.refused(path.source, path.site, bounce, observation.recipients);
    warmup.replied(path.source, isThrottleOrBlock(bounce), observation.recipients);
  };
}
