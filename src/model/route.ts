import type { SiteName } from './ids.ts';

export interface MxHost {
  readonly name: string;
  readonly preference: number;
  readonly addresses: readonly string[];
  /** The MX answer and this host's addresses were DNSSEC-validated (the AD bit): its TLSA records count (RFC 7672 §2.2). */
  readonly secure?: boolean;
}

/** Everything delivery needs to reach a domain, or why it cannot. */
export type RouteAnswer =
  | { readonly kind: 'route'; readonly site: SiteName; readonly hosts: readonly MxHost[]; readonly implicit: boolean }
  | { readonly kind: 'null-mx' }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'no-address'; readonly detail: string }
  | { readonly kind: 'temporary'; readonly detail: string };
