import type { Config } from '../config/index.ts';

/**
 * A shard's share of the settings that bound the whole process: with N shards each gets 1/N
 * (rounded up) of the ingress session cap, the queue's in-memory bounds, the body cache and the
 * outbox's disk, so N shards use what one loop would. Limits per client address
 * (smtp.limits.client_*) and per session stay as written: a shard applies them to the
 * connections it was given (docs/configuration.md says so).
 */
export function shardConfig(config: Config, threads: number): Config {
  if (threads === 1) return config;
  const share = (n: number): number => Math.max(1, Math.ceil(n / threads));
  return {
    ...config,
    smtp: { ...config.smtp, max_clients: share(config.smtp.max_clients) },
    spool: { ...config.spool, body_cache: Math.ceil(config.spool.body_cache / threads) },
    delivery: {
      ...config.delivery,
      max_active: share(config.delivery.max_active),
      max_active_recipients: share(config.delivery.max_active_recipients),
    },
    feedback: { ...config.feedback, max_disk: share(config.feedback.max_disk) },
  };
}
