/**
 * egress: the addresses Tern sends from (docs/egress.md). Sources (a local address and its EHLO
 * name) in weighted pools; mail picks a pool by its X-Tern-Meta `pool`.
 */
export { planEgress, warmupSources } from './plan.ts';
export { createWarmup, DEFAULT_CURVE, SLOW_CURVE, SLOW_PROVIDERS, type Ramp, type Warmup, type WarmupView } from './warmup.ts';
export { isThrottleOrBlock, ReputationBook, type ReputationSummary } from './reputation.ts';
export { createCalendar } from './calendar.ts';
export { checkEgressAddresses } from './addresses.ts';
export { egressView } from './view.ts';
export { egressObserver } from './observe.ts';
