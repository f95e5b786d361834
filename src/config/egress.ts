import { isIP } from 'node:net';
import { z } from 'zod';
import { hostname } from './fields.ts';

function validTimezone(timezone: string): boolean {
  try {
    new Intl.DateTimeFormat('en', { timeZone: timezone });
    return true;
  } catch {
    return false;
  }
}

/** Source and pool names: what X-Tern-Meta `pool` may say (src/ingress/meta.ts). */
const name = z.string().regex(/^[\w.-]{1,64}$/, 'must be 1 to 64 letters, digits, ".", "_" or "-"');

const curve = z.array(z.number().int().min(0)).min(1).max(366);
const date = z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'must be a date, YYYY-MM-DD').refine((d) => !Number.isNaN(Date.parse(`${d}T00:00:00Z`)), 'is not a date');

/** A new address's ramp (docs/egress.md, "Warm-up"): daily caps from `start`, one step a day of sending. */
const warmup = z.strictObject({
  start: date,
  /** Daily caps on everything the source sends; default: Tern's curve (50, 100, 250, ... 500,000 over 18 days). */
  schedule: curve.optional(),
  /** Daily caps per provider (names from the MX rules); default: a slower curve for gmail, outlook, office365, yahoo and apple. */
  providers: z.record(name, curve).optional(),
});

const source = z.strictObject({
  name,
  /** The local address connections bind to (IPv4 or IPv6); check-config wants it on this host. */
  address: z.string().refine((a) => isIP(a) !== 0, 'must be an IPv4 or IPv6 address'),
  /** The name given in EHLO from this address; its PTR record should say the same. Default: hostname. */
  ehlo: hostname.optional(),
  warmup: warmup.optional(),
});

const member = z.union([name, z.strictObject({ source: name, weight: z.number().int().min(1).max(1000) })]);
const memberName = (m: z.output<typeof member>): string => (typeof m === 'string' ? m : m.source);

/** egress (docs/egress.md): the addresses Tern sends from, in weighted pools. */
export const egress = z.strictObject({
  sources: z.array(source).default([]),
  /** Without pools, every source is in one pool named "default". */
  pools: z.array(z.strictObject({ name, sources: z.array(member).min(1) })).default([]),
  /** The pool of mail whose X-Tern-Meta names none; default: the first pool. */
  default_pool: name.optional(),
  /** The operator's time zone (IANA name): warm-up days turn at its midnight. */
  timezone: z.string().refine(validTimezone, 'must be a time zone name such as "UTC" or "Europe/Paris"').default('UTC'),
  /** A warming source whose day had more throttle and block replies than this share holds its ramp. */
  warmup_hold_above: z.number().min(0).max(1).default(0.05),
  /** Days of history kept per (source, site): what receivers said to each address. */
  reputation_days: z.number().int().min(1).max(90).default(7),
  /** Warm-up progress and reputation history across restarts; empty means <spool.dir>/egress. */
  state_dir: z.string().default(''),
}).superRefine((e, ctx) => {
  const sources = new Set<string>();
  e.sources.forEach((s, i) => {
    if (sources.has(s.name)) ctx.addIssue({ code: 'custom', path: ['sources', i, 'name'], message: `"${s.name}" names another source already` });
    sources.add(s.name);
  });
  if (e.pools.length > 0 && e.sources.length === 0) ctx.addIssue({ code: 'custom', path: ['pools'], message: 'pools need egress.sources to draw from' });
  const pools = new Set<string>();
  e.pools.forEach((p, i) => {
    if (pools.has(p.name)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'name'], message: `"${p.name}" names another pool already` });
    pools.add(p.name);
    const members = new Set<string>();
    p.sources.forEach((m, k) => {
      const n = memberName(m);
      if (!sources.has(n)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'sources', k], message: `"${n}" is not a source in egress.sources` });
      if (members.has(n)) ctx.addIssue({ code: 'custom', path: ['pools', i, 'sources', k], message: `"${n}" is in pool "${p.name}" twice` });
      members.add(n);
    });
  });
  const known = pools.size > 0 ? pools : new Set(['default']);
  if (e.default_pool !== undefined && !known.has(e.default_pool)) {
    ctx.addIssue({ code: 'custom', path: ['default_pool'], message: `"${e.default_pool}" is not a pool (${[...known].join(', ')})` });
  }
});

export type EgressConfig = z.output<typeof egress>;
