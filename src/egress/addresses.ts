import { networkInterfaces } from 'node:os';
import { isIPv4 } from 'node:net';
import type { EgressConfig } from '../config/index.ts';

/**
 * Sources whose address is not on this host: a connection could not bind to it (EADDRNOTAVAIL on
 * every attempt). Linux answers for all of 127.0.0.0/8 on the loopback interface, so any of those
 * will do. Reported like config problems, by key path.
 */
export function checkEgressAddresses(egress: EgressConfig, interfaces = networkInterfaces()): { path: string; problem: string }[] {
  const local = new Set(Object.values(interfaces).flatMap((list) => (list ?? []).map((i) => i.address.toLowerCase())));
  return egress.sources.flatMap((s, i) => {
    const address = s.address.toLowerCase();
    if (local.has(address) || (isIPv4(address) && address.startsWith('127.'))) return [];
    return [{ path: `egress.sources[${i}].address`, problem: `${s.address} is not an address of this host (${[...local].sort().join(', ')})` }];
  });
}
