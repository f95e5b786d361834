/**
 * delivery: one pool of SMTP connections per path (source, site). Takes a job (site, domain, MX
 * hosts with addresses, envelope, body opener) and returns an AttemptOutcome; asks shaping for
 * its path, its settings and its grants, and tells it what receivers said. Knows nothing of
 * retries, spool or events.
 */
export { createDelivery, type Delivery, type DeliveryPorts, type PolicySession, type PoolView } from './delivery.ts';
export { connectClient, loadTrust } from './smtp-client.ts';
export type { ConnectionReport, DeliveryJob, DeliveryHost, PoolDeps, PoolSettings, PathPorts } from './pool.ts';
