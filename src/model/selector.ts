/**
 * Which queued mail an operator's action applies to (POST /api/v1/flush, and later bounce): one
 * key of the five, as BRIEF §3 fixes them. Parsed and checked by admin; matched by the queue.
 */
export type Selector =
  | { readonly campaign: string }
  | { readonly delivery: string }
  | { readonly domain: string }
  | { readonly site: string }
  | { readonly queue_id: string };

export type SelectorKey = 'campaign' | 'delivery' | 'domain' | 'site' | 'queue_id';

/** What an operator's flush or bounce reached. */
export interface Operated { readonly messages: number; readonly recipients: number }

export function selectorKey(s: Selector): SelectorKey {
  return Object.keys(s)[0] as SelectorKey;
}

export function selectorValue(s: Selector): string {
  return Object.values(s)[0] as string;
}
