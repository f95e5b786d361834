import type { SiteName } from './ids.ts';

export interface MxHost { readonly name: string; readonly preference: number; readonly addresses: readonly string[] }

/** Everything delivery needs to reach a domain, or why it cannot. */
export type RouteAnswer =
  | { readonly kind: 'route'; readonly site: SiteName; readonly hosts: readonly MxHost[]; readonly implicit: boolean }
  | { readonly kind: 'null-mx' }
  | { readonly kind: 'nxdomain' }
  | { readonly kind: 'no-address'; readonly detail: string }
  | { readonly kind: 'temporary'; readonly detail: string };
