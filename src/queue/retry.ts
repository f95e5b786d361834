/**
 * The retry schedule as a pure function: base × 2^(attempt−1), capped at max, with ±jitter.
 * As in KumoMTA, a recipient expires *now* when the next attempt would fall past its validity,
 * rather than waiting for an attempt that could never be made.
 */
export interface RetryPolicy { readonly base: number; readonly max: number; readonly jitter: number }

export type NextAttempt = { readonly kind: 'retry'; readonly at: number } | { readonly kind: 'expire' };

export function nextAttempt(policy: RetryPolicy, a: { attempt: number; now: number; expiresAt: number; random: number }): NextAttempt {
  const backoff = Math.min(policy.max, policy.base * 2 ** Math.max(0, a.attempt - 1));
  const at = Math.round(a.now + backoff * (1 - policy.jitter + 2 * policy.jitter * a.random));
  return at >= a.expiresAt ? { kind: 'expire' } : { kind: 'retry', at };
}
