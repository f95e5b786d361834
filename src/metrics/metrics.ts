import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

const VERDICTS = ['delivered', 'retry', 'failed'] as const;

/** Every metric Tern exports, defined in one place; labels are closed sets. */
export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tern_process_' });
  const accepted = new Counter({ name: 'tern_messages_accepted_total', help: 'Messages accepted from upstream and spooled', registers: [registry] });
  const acceptedRecipients = new Counter({ name: 'tern_recipients_accepted_total', help: 'Recipients accepted from upstream', registers: [registry] });
  const attempts = new Counter({ name: 'tern_delivery_attempts_total', help: 'Per-recipient delivery attempts by verdict', labelNames: ['verdict'] as const, registers: [registry] });
  for (const verdict of VERDICTS) attempts.labels({ verdict }).inc(0);
  const queueRecipients = new Gauge({ name: 'tern_queue_recipients', help: 'Recipients waiting for a final outcome', registers: [registry] });
  const queueMessages = new Gauge({ name: 'tern_queue_messages', help: 'Messages in the queue by state', labelNames: ['state'] as const, registers: [registry] });
  const connections = new Gauge({ name: 'tern_delivery_connections', help: 'Open outbound SMTP connections', registers: [registry] });
  // Labels from closed vocabularies (33 reasons, 5 categories, 3 types): cardinality stays bounded.
  const bounces = new Counter({ name: 'tern_bounces_total', help: 'Failed delivery attempts per recipient, by bounce classification', labelNames: ['reason', 'category', 'type', 'retry'] as const, registers: [registry] });
  return { registry, accepted, acceptedRecipients, attempts, bounces, queueRecipients, queueMessages, connections };
}

export type Metrics = ReturnType<typeof createMetrics>;
