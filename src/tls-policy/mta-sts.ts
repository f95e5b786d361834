/**
 * MTA-STS (RFC 8461): what a receiving domain publishes, read strictly. The TXT record at
 * `_mta-sts.<domain>` says a policy exists and names its version (`id`); the policy file at
 * `https://mta-sts.<domain>/.well-known/mta-sts.txt` says which MX hosts may receive its mail and
 * whether a sender must insist on verified TLS to them (`enforce`), only report (`testing`) or
 * forget the policy (`none`). Parsing only: fetching and caching are elsewhere in this folder.
 */
import { mxMatches } from '../model/tls-policy.ts';

export { mxMatches };

export const STS_LIMITS = {
  /** A policy file larger than this is refused unread past it (RFC 8461 §3.3 suggests 64 KiB). */
  maxPolicyBytes: 65_536,
  /** max_age is capped at a year (RFC 8461 §3.2: "up to 31557600"). */
  maxAgeSeconds: 31_557_600,
  /** `id` is 1 to 32 letters and digits (RFC 8461 §3.1). */
  maxIdChars: 32,
  /** MX patterns a policy may list: more is not a mail domain's policy. */
  maxMxPatterns: 100,
} as const;

export type StsMode = 'enforce' | 'testing' | 'none';

export interface StsPolicy {
  readonly mode: StsMode;
  /** Host names or `*.domain` patterns, lower case, without a trailing dot. */
  readonly mx: readonly string[];
  readonly maxAgeSeconds: number;
}

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

const ID = /^[A-Za-z0-9]{1,32}$/;
const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * The `_mta-sts` TXT answer (each record's strings joined): the policy id, or why there is no
 * usable record. Records that are not STSv1 are ignored; more than one STSv1 record means none
 * (RFC 8461 §3.1).
 */
export function parseStsRecord(records: readonly string[]): Parsed<{ id: string }> {
  const sts = records.filter((r) => /^v=STSv1(;|$)/.test(r.trim()));
  if (sts.length === 0) return { ok: false, error: 'no v=STSv1 record' };
  if (sts.length > 1) return { ok: false, error: `${sts.length} v=STSv1 records: none is taken (RFC 8461 §3.1)` };
  const fields = new Map<string, string>();
  for (const part of (sts[0] as string).split(';')) {
    const field = part.trim();
    if (field === '') continue;
    const eq = field.indexOf('=');
    if (eq <= 0) return { ok: false, error: `malformed field "${field.slice(0, 40)}"` };
    const key = field.slice(0, eq).trim();
    if (!fields.has(key)) fields.set(key, field.slice(eq + 1).trim());
  }
  const id = fields.get('id');
  if (id === undefined) return { ok: false, error: 'no id= field' };
  if (!ID.test(id)) return { ok: false, error: `id "${id.slice(0, 40)}" is not 1-${STS_LIMITS.maxIdChars} letters and digits` };
  return { ok: true, value: { id } };
}

/** The policy file's text (RFC 8461 §3.2): lines of `key: value`, CRLF or LF. */
export function parseStsPolicy(text: string): Parsed<StsPolicy> {
  if (Buffer.byteLength(text) > STS_LIMITS.maxPolicyBytes) return { ok: false, error: `policy over ${STS_LIMITS.maxPolicyBytes} bytes` };
  let version: string | undefined;
  let mode: string | undefined;
  let maxAge: string | undefined;
  const mx: string[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { ok: false, error: `malformed line "${line.slice(0, 60)}"` };
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'version') version ??= value;
    else if (key === 'mode') mode ??= value;
    else if (key === 'max_age') maxAge ??= value;
    else if (key === 'mx') mx.push(value.toLowerCase().replace(/\.$/, ''));
    // Other keys are extensions this reader does not know: ignored, as §3.2 says.
  }
  if (version !== 'STSv1') return { ok: false, error: version === undefined ? 'no version' : `version "${version.slice(0, 20)}" is not STSv1` };
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, error: mode === undefined ? 'no mode' : `mode "${mode.slice(0, 20)}" is not enforce, testing or none` };
  if (maxAge === undefined || !/^\d{1,10}$/.test(maxAge)) return { ok: false, error: maxAge === undefined ? 'no max_age' : `max_age "${maxAge.slice(0, 20)}" is not a number of seconds` };
  if (mode !== 'none' && mx.length === 0) return { ok: false, error: `mode ${mode} without any mx` };
  if (mx.length > STS_LIMITS.maxMxPatterns) return { ok: false, error: `${mx.length} mx patterns (at most ${STS_LIMITS.maxMxPatterns})` };
  const bad = mx.find((p) => !validPattern(p));
  if (bad !== undefined) return { ok: false, error: `mx "${bad.slice(0, 60)}" is not a host name or *.domain` };
  return { ok: true, value: { mode, mx, maxAgeSeconds: Math.min(Number(maxAge), STS_LIMITS.maxAgeSeconds) } };
}

function validPattern(pattern: string): boolean {
  const labels = (pattern.startsWith('*.') ? pattern.slice(2) : pattern).split('.');
  return labels.length >= 2 && labels.every((l) => HOST_LABEL.test(l)) && pattern.length <= 253;
}
