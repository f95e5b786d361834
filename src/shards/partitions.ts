import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

/**
 * Which shard owns which folders (ADR 0010, decision 4). Partition 0 is the configured folder
 * itself, so the spool of a single-loop Tern is shard 0's with nothing to move; partition K ≥ 1
 * is `<dir>/shard-K`. Shard K of N owns partition K and adopts every partition J ≥ N with
 * J mod N = K: lowering `tuning.threads` never strands mail, and no partition has two owners.
 */

const SHARD_DIR = /^shard-(\d+)$/;

/** The folder of partition `k` under a configured spool or feedback folder. */
export function partitionDir(root: string, k: number): string {
  return k === 0 ? root : join(root, `shard-${k}`);
}

/** Partitions a shard runs: its own first, then those it adopts from a larger N of a past run. */
export function partitionsOf(shard: number, threads: number, present: readonly number[]): number[] {
  if (!Number.isInteger(shard) || !Number.isInteger(threads) || shard < 0 || shard >= threads) {
    throw new RangeError(`shard ${shard} of ${threads} does not exist`);
  }
  const adopted = present.filter((j) => j >= threads && j % threads === shard);
  return [shard, ...[...new Set(adopted)].sort((a, b) => a - b)];
}

/** Partition numbers (≥ 1) with a folder under root; none when root does not exist yet. */
export function presentPartitions(root: string): number[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names.flatMap((n) => {
    const m = SHARD_DIR.exec(n);
    const k = m ? Number(m[1]) : 0;
    return k >= 1 && Number.isSafeInteger(k) ? [k] : [];
  });
}

/**
 * `tuning.threads`: a number is taken as it is; "auto" is the CPUs this process may use less
 * one, which libuv's pool (signing, fsync) and V8's helpers need (ADR 0010): one loop on 2 CPUs.
 */
export function resolveThreads(setting: number | 'auto', cpus: number = availableParallelism()): number {
  return setting === 'auto' ? Math.max(1, cpus - 1) : setting;
}
