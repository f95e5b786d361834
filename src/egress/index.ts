/**
 * egress: the addresses Tern sends from (docs/egress.md). Sources (a local address and its EHLO
 * name) in weighted pools; mail picks a pool by its X-Tern-Meta `pool`.
 */
export { planEgress, warmupSources } from './plan.ts';
export { createWarmup, DEFAULT_CURVE, SLOW_CURVE, SLOW_PROVIDERS, type Warmup, type WarmupView } from './warmup.ts';
export { isThrottleOrBlock } from './reputation.ts';
export { checkEgressAddresses } from './addresses.ts';
export { egressView } from './view.ts';
export { warmupObserver } from './observe.ts';
