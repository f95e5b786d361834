import { queueIdTime, type QueueId } from '../model/ids.ts';

/** Arrivals are counted per minute: a queue spanning a 5-day validity has at most 7,200 buckets. */
const BUCKET_MS = 60_000;

/**
 * How many messages in the queue arrived in each minute, so the oldest one's age costs a pass over
 * a few thousand buckets at a scrape instead of one over every message (125 ms a million, on the
 * event loop). Queue ids carry their arrival time, so nothing more is kept per message.
 */
export class Arrivals {
  readonly #counts = new Map<number, number>();

  /** A message entered the queue (accepted, or recovered with recipients pending). */
  add(id: QueueId): void {
    const bucket = bucketOf(id);
    this.#counts.set(bucket, (this.#counts.get(bucket) ?? 0) + 1);
  }

  /** A message left the queue for good (every recipient final, or set aside as unreadable). */
  remove(id: QueueId): void {
    const bucket = bucketOf(id);
    const left = (this.#counts.get(bucket) ?? 0) - 1;
    if (left > 0) this.#counts.set(bucket, left);
    else this.#counts.delete(bucket);
  }

  /** The start of the minute the oldest message arrived in (ms), or undefined when none waits. */
  oldest(): number | undefined {
    let first: number | undefined;
    for (const bucket of this.#counts.keys()) if (first === undefined || bucket < first) first = bucket;
    return first;
  }
}

const bucketOf = (id: QueueId): number => Math.floor(queueIdTime(id) / BUCKET_MS) * BUCKET_MS;
