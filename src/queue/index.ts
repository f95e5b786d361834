/**
 * queue: the scheduler. A min-heap of (due, message) on which waiting mail costs one small entry;
 * up to max_active messages are loaded and attempted at once (recipients grouped per domain);
 * each recipient's verdict is journalled; retries follow a pure schedule; expiry is early.
 */
export { createQueue, type Queue, type QueuePorts, type QueueOptions, type QueueSnapshot, type RecipientOutcome, type QueueJob } from './queue.ts';
export { nextAttempt, type RetryPolicy } from './retry.ts';
export { decide, isTooManyRecipients, type Verdict } from './decide.ts';
export { MinHeap } from './heap.ts';
export { matchesSelector } from './select.ts';
export type { MessageView } from './operator.ts';
