import type { BounceClassification } from '../model/bounce.ts';
import type { PathObservation } from '../model/path.ts';
import type { SmtpReply } from '../model/reply.ts';
import { isThrottleOrBlock } from './reputation.ts';
import type { Warmup } from './warmup.ts';

/**
 * What delivery reports of a path, as warm-up judges it: the refusals that were throttles or
 * blocks (what was sent is counted when it is taken, before the attempt).
 */
export function warmupObserver(warmup: Warmup, classify: (reply: SmtpReply) => Pick<BounceClassification, 'category' | 'reason'>) {
  return (path: { readonly source: string; readonly provider: string | undefined }, observation: PathObservation): void => {
    if (observation.kind !== 'reply') return;
    warmup.replied(path.source, isThrottleOrBlock(classify(observation.reply)), observation.recipients);
  };
}
