/**
 * delivery: SMTPConnection pools per site. Takes a job (site, MX hosts with addresses, envelope,
 * body opener) and returns an AttemptOutcome; knows nothing of retries, spool or events.
 */
export { createDelivery, type Delivery } from './delivery.ts';
export type { DeliveryJob, DeliveryHost, PoolSettings, PoolLimits } from './pool.ts';
