/**
 * dns: domain → MX host set (with addresses) → site, through our own UDP/TCP client on dns2's
 * packet codec, so every query has a timeout, retries across servers, and a TTL-honouring cache
 * with negative caching. Null MX and NXDOMAIN are answers, not errors; only "temporary" defers.
 */
export { createResolver, orderHosts, resolveServers, type Resolver, type MxAnswer, type AddressAnswer, type TxtAnswer, type TlsaAnswer, type ResolverOptions } from './resolver.ts';
export { nodeStyleResolver, type NodeStyleResolve } from './node-style.ts';
