/**
 * feedback: each recipient's life cycle as events (relayed, delivered, soft_bounce, failed) —
 * made durable in an outbox before the action that caused them counts as done, sent to a signed
 * batching webhook, optionally copied to a JSON-lines log, counted per campaign and delivery, and
 * filed per campaign for the dashboard's delivery log.
 */
export { createFeedback, type Feedback, type FeedbackDeps, type FeedbackOptions, type Ledger } from './feedback.ts';
export { openEventLog, type EventLog } from './event-log.ts';
export { createRelayedRecorder, type RelayedRecorder } from './relayed.ts';
export { joinFeedback } from './joined.ts';
export { mergeKpiViews, mergeKpiLists, type KpiScope, type KpiView } from './kpis.ts';
export { CampaignLog, campaignLogCsv, campaignTimeline, readCampaignLog, sweepCampaignLogsHourly, CAMPAIGN_LOG_LIMITS, type LogEntry, type LogQuery, type TimelineRow } from './campaign-log.ts';

/** Where the campaign logs live: beside the outbox, `<feedback.dir>/campaigns`. */
export const campaignLogDir = (config: { readonly feedback: { readonly dir: string } }): string => `${config.feedback.dir}/campaigns`;
export type { WebhookOptions, WebhookResult } from './webhook.ts';
