/** A pipeline's answer to GET /readyz (src/admin/readiness.ts judges it; with shards, one per shard). */
export interface Readiness {
  /** Free space above spool.min_free: ingress takes mail (else it answers 452 4.3.1). */
  readonly spool: boolean;
  /** Every SMTP listener bound and accepting. */
  readonly listening: boolean;
  /** How long the outbox has held events with none acknowledged (0: none waiting). */
  readonly outboxStalledMs: number;
}
