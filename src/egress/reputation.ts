import type { BounceClassification } from '../model/bounce.ts';

/** Replies that say a receiver distrusts or is slowing a source: blocks (classes 50-54) and throttles. */
const THROTTLES = new Set(['toomanyconn', 'speeding']);

export function isThrottleOrBlock(bounce: Pick<BounceClassification, 'category' | 'reason'>): boolean {
  return bounce.category === 'block' || THROTTLES.has(bounce.reason);
}
