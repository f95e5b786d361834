import { parseDuration } from '../lib/units.ts';

export type MetaResult =
  | { readonly ok: true; readonly meta: Record<string, unknown>; readonly validityMs?: number }
  | { readonly ok: false; readonly problem: string };

const MAX_META_BYTES = 16 * 1024;

/** X-Tern-Meta must be a JSON object; `validity` must be a duration and `pool` one of `pools` (when given). */
export function parseMeta(values: readonly string[], pools?: readonly string[]): MetaResult {
  if (values.length === 0) return { ok: true, meta: {} };
  if (values.length > 1) return { ok: false, problem: 'X-Tern-Meta appears more than once' };
  const text = (values[0] as string).trim();
  if (Buffer.byteLength(text) > MAX_META_BYTES) return { ok: false, problem: `X-Tern-Meta is larger than ${MAX_META_BYTES} bytes` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { ok: false, problem: `X-Tern-Meta is not valid JSON (${(err as Error).message})` };
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return { ok: false, problem: 'X-Tern-Meta must be a JSON object' };
  }
  const meta = parsed as Record<string, unknown>;
  if (meta.pool !== undefined && (typeof meta.pool !== 'string' || !/^[\w.-]{1,64}$/.test(meta.pool))) {
    return { ok: false, problem: 'X-Tern-Meta "pool" must be a name of letters, digits, ".", "_" or "-"' };
  }
  if (typeof meta.pool === 'string' && pools && !pools.includes(meta.pool)) {
    return { ok: false, problem: `X-Tern-Meta "pool" ${JSON.stringify(meta.pool)} is not an egress pool here (${pools.join(', ')})` };
  }
  if (meta.validity === undefined) return { ok: true, meta };
  const validityMs = typeof meta.validity === 'string' ? parseDuration(meta.validity) : undefined;
  if (validityMs === undefined || validityMs <= 0) {
    return { ok: false, problem: `X-Tern-Meta "validity" must be a duration such as "4h" or "3d", not ${JSON.stringify(meta.validity)}` };
  }
  return { ok: true, meta, validityMs };
}
