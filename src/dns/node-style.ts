import { isIPv4, isIPv6 } from 'node:net';
import type { Resolver } from './resolver.ts';

/**
 * Tern's resolver behind the signature of Node's `dns.promises.resolve(name, type)`, which
 * libraries such as mailauth take: so their SPF, DKIM and DMARC lookups go to `dns.servers` with
 * Tern's timeouts and cache. Errors carry Node's codes: ENOTFOUND (no such name), ENODATA (no
 * record of that type), ETIMEOUT (every server failed: a temporary error for the caller).
 */
export type NodeStyleResolve = (name: string, type: string) => Promise<string[][] | string[] | { exchange: string; priority: number }[]>;

export function nodeStyleResolver(resolver: Resolver): NodeStyleResolve {
  return async (name, type) => {
    switch (type.toUpperCase()) {
      case 'TXT': {
        const answer = await resolver.resolveTxt(name);
        if (answer.kind === 'txt') return nonEmpty(answer.records.map((r) => [r]), name, type);
        throw failure(answer, name, type);
      }
      case 'MX': {
        const answer = await resolver.resolveMx(name);
        if (answer.kind === 'mx') return answer.implicit ? Promise.reject(dnsError('ENODATA', name, type)) : answer.hosts.map((h) => ({ ...h }));
        if (answer.kind === 'null-mx') return [{ exchange: '', priority: 0 }];
        throw failure(answer, name, type);
      }
      case 'A':
      case 'AAAA': {
        const answer = await resolver.resolveAddresses(name);
        if (answer.kind === 'addresses') return nonEmpty(answer.addresses.filter(type.toUpperCase() === 'A' ? isIPv4 : isIPv6), name, type);
        throw failure(answer, name, type);
      }
      default:
        // PTR and the rest: Tern's resolver does not ask for them; SPF's ptr mechanism is deprecated (RFC 7208 5.5).
        throw dnsError('ENOTFOUND', name, type);
    }
  };
}

function nonEmpty<T>(list: T[], name: string, type: string): T[] {
  if (list.length === 0) throw dnsError('ENODATA', name, type);
  return list;
}

function failure(answer: { kind: 'nxdomain' } | { kind: 'temporary'; detail: string }, name: string, type: string): Error {
  return answer.kind === 'nxdomain' ? dnsError('ENOTFOUND', name, type) : dnsError('ETIMEOUT', name, type, answer.detail);
}

function dnsError(code: string, name: string, type: string, detail = ''): Error {
  return Object.assign(new Error(`${type} ${name}: ${code}${detail ? ` (${detail})` : ''}`), { code, hostname: name });
}
