/**
 * feedback: each recipient's life cycle as events (relayed, delivered, soft_bounce, failed) —
 * made durable in an outbox before the action that caused them counts as done, sent to a signed
 * batching webhook, optionally copied to a JSON-lines log, and counted per campaign and delivery.
 */
export { createFeedback, type Feedback, type FeedbackDeps, type FeedbackOptions, type Ledger } from './feedback.ts';
export { openEventLog, type EventLog } from './event-log.ts';
export { createRelayedRecorder, type RelayedRecorder } from './relayed.ts';
export { joinFeedback } from './joined.ts';
export { mergeKpiViews, type KpiScope, type KpiView } from './kpis.ts';
export type { WebhookOptions, WebhookResult } from './webhook.ts';
