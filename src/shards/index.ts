/**
 * shards: the pipelines of one process (ADR 0010) — one on the main thread (`tuning.threads: 1`)
 * or N in worker threads over partitions of the spool, driven by the daemon through one
 * interface, their admin views merged.
 */
export { shardConfig } from './config.ts';
export { partitionDir, partitionsOf, presentPartitions, resolveThreads } from './partitions.ts';
export { localShards, sumMaps, sumQueueViews, type QueueView, type Shards } from './shards.ts';
export { workerShards, type WorkerShardsDeps } from './threads.ts';
