/**
 * egress: the addresses Tern sends from (docs/egress.md). Sources (a local address and its EHLO
 * name) in weighted pools; mail picks a pool by its X-Tern-Meta `pool`.
 */
export { planEgress } from './plan.ts';
export { checkEgressAddresses } from './addresses.ts';
