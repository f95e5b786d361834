import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { duration, pathSettingFields, rate } from '../config/index.ts';
import { siteNameOf } from '../model/ids.ts';
import { LIMIT_KEYS, RATE_KEYS, type LimitKey, type PartialSettings } from './settings.ts';

/**
 * The MX rules language (docs/shaping.md): static settings for providers (by MX host suffix),
 * sites (by MX host set) and domains, and adaptive rules that react to what receivers say.
 * Parsing is pure and reports every problem with its place in the file (`adaptive[2].action`).
 */

/** Connection-level failures an adaptive rule can match instead of a reply (Tern saw them; nobody said them). */
export const CONNECTION_EVENTS = ['connect-timeout', 'connect-refused', 'greeting-timeout', 'tls-failed', 'dropped'] as const;
export type ConnectionEvent = (typeof CONNECTION_EVENTS)[number];

export interface Provider {
  readonly name: string;
  /** MX host name suffixes, lower case, without a leading dot: "google.com" matches "aspmx.l.google.com". */
  readonly mx: readonly string[];
  readonly settings: PartialSettings;
}

/** absolute: the limit becomes this (rates per second); relative: `cut` below the level in use. */
export type LimitChange = { readonly kind: 'absolute'; readonly value: number } | { readonly kind: 'relative'; readonly cut: number };

export type Action =
  | { readonly kind: 'lower'; readonly changes: ReadonlyMap<LimitKey, LimitChange> }
  | { readonly kind: 'pause' }
  | { readonly kind: 'fail' };

export interface AdaptiveRule {
  readonly id: string;
  readonly match?: RegExp;
  readonly reasons?: readonly string[];
  readonly codes?: readonly string[];
  readonly enhanced?: readonly string[];
  readonly events?: readonly ConnectionEvent[];
  readonly providers?: readonly string[];
  /** Fires on the count-th match within `within` ms (count 1: at once). */
  readonly trigger: { readonly count: number; readonly within: number };
  readonly action: Action;
  /** How long the effect lasts after its latest trigger. */
  readonly duration: number;
  /** Every `every` ms of success without a trigger, lowered limits rise by `step` (a fraction), doubling each time. */
  readonly recover: { readonly every: number; readonly step: number };
}

export interface RuleSet {
  readonly providers: readonly Provider[];
  readonly sites: ReadonlyMap<string, PartialSettings>;
  readonly domains: ReadonlyMap<string, PartialSettings>;
  readonly adaptive: readonly AdaptiveRule[];
  /** Ids this file switches off (`enabled: false`), shipped rules among them. */
  readonly disabled: ReadonlySet<string>;
}

export interface RuleProblem { readonly path: string; readonly problem: string }
export type LoadedRuleSet = { readonly ok: true; readonly rules: RuleSet } | { readonly ok: false; readonly problems: readonly RuleProblem[] };

export const EMPTY_RULES: RuleSet = { providers: [], sites: new Map(), domains: new Map(), adaptive: [], disabled: new Set() };

const DEFAULT_RECOVER = { every: 60_000, step: 0.1 };
const NAME = /^[a-z0-9][a-z0-9_-]*$/;
const PERCENT = /^([-+])?(\d+(?:\.\d+)?)%$/;

const about = { source: z.string().optional(), note: z.string().optional() };
const mxSuffix = z.string().regex(/^\.?[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i, 'must be a host name suffix such as google.com');
const provider = z.strictObject({ name: z.string().regex(NAME, 'must be lower-case letters, digits, "-" or "_"'), mx: z.array(mxSuffix).min(1), ...pathSettingFields, ...about });
const site = z.strictObject({ site: z.string().regex(/^[a-z0-9.,-]+$/i, 'must be a site name: MX host names joined by commas'), ...pathSettingFields, ...about });
const domain = z.strictObject({ domain: z.string().regex(/^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$/i, 'must be a domain name'), ...pathSettingFields, ...about });

const change = z.union([z.number(), z.string()]);
const adaptive = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, dots, dashes'),
  enabled: z.boolean().default(true),
  match: z.string().min(1).optional(),
  reason: z.array(z.string()).min(1).optional(),
  code: z.array(z.union([z.number().int().min(200).max(599), z.string().regex(/^[245][0-9x][0-9x]$/i, 'must be a reply code such as 421, 45x or 4xx')])).min(1).optional(),
  enhanced: z.array(z.string().regex(/^([245]|\*)\.(\d{1,3}|\*)\.(\d{1,3}|\*)$/, 'must be an enhanced status code such as 4.7.0 or 4.7.*')).min(1).optional(),
  event: z.array(z.enum(CONNECTION_EVENTS)).min(1).optional(),
  providers: z.array(z.string()).min(1).optional(),
  trigger: z.union([z.literal('immediately'), z.strictObject({ count: z.number().int().min(1).max(10_000), within: duration.refine((ms) => ms > 0, 'must be longer than 0') })]).default('immediately'),
  action: z.strictObject({
    lower: z.strictObject(Object.fromEntries(LIMIT_KEYS.map((k) => [k, change.optional()])) as Record<LimitKey, z.ZodOptional<typeof change>>).optional(),
    pause: z.literal(true).optional(),
    fail: z.literal(true).optional(),
  }),
  duration: duration.refine((ms) => ms > 0, 'must be longer than 0'),
  recover: z.strictObject({ every: duration.refine((ms) => ms > 0, 'must be longer than 0').optional(), step: z.string().regex(PERCENT, 'must be a percentage such as 10%').optional() }).optional(),
  ...about,
});

const fileSchema = z.strictObject({
  providers: z.array(z.unknown()).default([]),
  sites: z.array(z.unknown()).default([]),
  domains: z.array(z.unknown()).default([]),
  adaptive: z.array(z.unknown()).default([]),
});

export interface ParseOptions {
  /** The bounce reasons a `reason` condition may name (src/bounce's vocabulary). */
  readonly reasons: readonly string[];
}

/** Parse one rules document. Only settings the rule names are set; the rest come from below. */
export function parseShapingRules(text: string, options: ParseOptions): LoadedRuleSet {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) return { ok: false, problems: doc.errors.map((e) => ({ path: '(yaml)', problem: e.message.split('\n')[0] ?? e.message })) };
  const file = fileSchema.safeParse(doc.toJS() ?? {});
  if (!file.success) return { ok: false, problems: issuesToProblems('', file.error.issues) };
  const problems: RuleProblem[] = [];
  const each = <T>(list: readonly unknown[], section: string, schema: z.ZodType<T>, key: (t: T) => string, field: string): T[] => {
    const seen = new Set<string>();
    return list.flatMap((raw, i) => {
      const parsed = schema.safeParse(raw);
      if (!parsed.success) {
        problems.push(...issuesToProblems(`${section}[${i}]`, parsed.error.issues, raw));
        return [];
      }
      const k = key(parsed.data);
      if (seen.has(k)) problems.push({ path: `${section}[${i}].${field}`, problem: `duplicate ${field} "${k}"` });
      seen.add(k);
      return [parsed.data];
    });
  };
  const providers = each(file.data.providers, 'providers', provider, (p) => p.name, 'name');
  const sites = each(file.data.sites, 'sites', site, (s) => siteNameOf(s.site.split(',')), 'site');
  const domains = each(file.data.domains, 'domains', domain, (d) => d.domain.toLowerCase(), 'domain');
  const disabled = new Set<string>();
  const ids = new Set<string>();
  const adaptiveRules = file.data.adaptive.flatMap((raw, i) => {
    const parsed = adaptive.safeParse(raw);
    if (!parsed.success) {
      problems.push(...issuesToProblems(`adaptive[${i}]`, parsed.error.issues, raw));
      return [];
    }
    if (ids.has(parsed.data.id)) problems.push({ path: `adaptive[${i}].id`, problem: `duplicate id "${parsed.data.id}"` });
    ids.add(parsed.data.id);
    if (!parsed.data.enabled) {
      disabled.add(parsed.data.id);
      return [];
    }
    const compiled = compileAdaptive(parsed.data, `adaptive[${i}]`, options, problems);
    return compiled ? [compiled] : [];
  });
  if (problems.length > 0) return { ok: false, problems };
  return {
    ok: true,
    rules: {
      providers: providers.map((p) => ({ name: p.name, mx: p.mx.map((s) => s.toLowerCase().replace(/^\./, '')), settings: settingsOf(p) })),
      sites: new Map(sites.map((s) => [siteNameOf(s.site.split(',')), settingsOf(s)])),
      domains: new Map(domains.map((d) => [d.domain.toLowerCase(), settingsOf(d)])),
      adaptive: adaptiveRules.map((r) => r.rule),
      disabled,
    },
  };
}

export function loadShapingRulesFile(path: string, options: ParseOptions): LoadedRuleSet {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, problems: [{ path: '(file)', problem: `cannot read ${path}: ${(err as Error).message}` }] };
  }
  return parseShapingRules(text, options);
}

/** The rules Tern ships (src/shaping/default-rules.yaml, copied beside the build). */
export function defaultShapingRules(options: ParseOptions): RuleSet {
  const loaded = loadShapingRulesFile(new URL('./default-rules.yaml', import.meta.url).pathname, options);
  if (!loaded.ok) throw new Error(`default shaping rules are invalid: ${loaded.problems.map((p) => `${p.path}: ${p.problem}`).join('; ')}`);
  return loaded.rules;
}

/**
 * The operator's rules over Tern's: an operator provider or adaptive rule replaces the shipped one
 * of the same name or id (`enabled: false` switches a shipped rule off); the operator's come first.
 */
export function combineRules(operator: RuleSet, shipped: RuleSet): LoadedRuleSet {
  const names = new Set(operator.providers.map((p) => p.name));
  const ids = new Set([...operator.adaptive.map((r) => r.id), ...operator.disabled]);
  const providers = [...operator.providers, ...shipped.providers.filter((p) => !names.has(p.name))];
  const adaptiveRules = [...operator.adaptive, ...shipped.adaptive.filter((r) => !ids.has(r.id))];
  const known = new Set(providers.map((p) => p.name));
  const problems: RuleProblem[] = adaptiveRules.flatMap((r) =>
    (r.providers ?? []).filter((p) => !known.has(p)).map((p) => ({ path: `adaptive (rule "${r.id}").providers`, problem: `"${p}" is not a provider in any rules file` })));
  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, rules: { providers, sites: operator.sites, domains: operator.domains, adaptive: adaptiveRules, disabled: operator.disabled } };
}

type ParsedAdaptive = z.output<typeof adaptive>;

function compileAdaptive(r: ParsedAdaptive, at: string, options: ParseOptions, problems: RuleProblem[]): { rule: AdaptiveRule } | undefined {
  const before = problems.length;
  const named = ` (rule "${r.id}")`;
  if (r.match === undefined && !r.reason && !r.code && !r.enhanced && !r.event) problems.push({ path: at, problem: `needs at least one of match, reason, code, enhanced, event${named}` });
  if (r.event && (r.match !== undefined || r.reason || r.code || r.enhanced)) problems.push({ path: `${at}.event`, problem: `a connection event has no reply to match: use event alone${named}` });
  for (const reason of r.reason ?? []) if (!options.reasons.includes(reason)) problems.push({ path: `${at}.reason`, problem: `"${reason}" is not a known bounce reason (docs/bounces.md)${named}` });
  let match: RegExp | undefined;
  if (r.match !== undefined) {
    try {
      match = new RegExp(r.match, 'i');
    } catch (err) {
      problems.push({ path: `${at}.match`, problem: `invalid regular expression${named}: ${(err as Error).message}` });
    }
  }
  const action = compileAction(r.action, `${at}.action`, named, problems);
  if (problems.length > before || !action) return undefined;
  const trigger = r.trigger === 'immediately' ? { count: 1, within: 1 } : r.trigger;
  const step = r.recover?.step ? Number(PERCENT.exec(r.recover.step)?.[2]) / 100 : DEFAULT_RECOVER.step;
  return {
    rule: {
      id: r.id,
      ...(match ? { match } : {}),
      ...(r.reason ? { reasons: r.reason } : {}),
      ...(r.code ? { codes: r.code.map((c) => String(c).toLowerCase()) } : {}),
      ...(r.enhanced ? { enhanced: r.enhanced } : {}),
      ...(r.event ? { events: r.event } : {}),
      ...(r.providers ? { providers: r.providers } : {}),
      trigger,
      action,
      duration: r.duration,
      recover: { every: r.recover?.every ?? DEFAULT_RECOVER.every, step },
    },
  };
}

function compileAction(a: ParsedAdaptive['action'], at: string, named: string, problems: RuleProblem[]): Action | undefined {
  const chosen = [a.lower ? 'lower' : undefined, a.pause ? 'pause' : undefined, a.fail ? 'fail' : undefined].filter(Boolean);
  if (chosen.length !== 1) {
    problems.push({ path: at, problem: `must be exactly one of lower, pause, fail${named}` });
    return undefined;
  }
  if (a.pause) return { kind: 'pause' };
  if (a.fail) return { kind: 'fail' };
  const changes = new Map<LimitKey, LimitChange>();
  for (const key of LIMIT_KEYS) {
    const raw = a.lower?.[key];
    if (raw === undefined) continue;
    const parsed = parseChange(key, raw);
    if (typeof parsed === 'string') problems.push({ path: `${at}.lower.${key}`, problem: `${parsed}${named}` });
    else changes.set(key, parsed);
  }
  if (changes.size === 0 && problems.every((p) => !p.path.startsWith(`${at}.lower`))) problems.push({ path: `${at}.lower`, problem: `names no limit to lower${named}` });
  return { kind: 'lower', changes };
}

/** `-25%`: a quarter below the level in use; `observed`: the level in use; else an absolute value. */
function parseChange(key: LimitKey, raw: number | string): LimitChange | string {
  if (raw === 'observed') return { kind: 'relative', cut: 0 };
  const percent = typeof raw === 'string' ? PERCENT.exec(raw.trim()) : null;
  if (percent) {
    const cut = Number(percent[2]) / 100;
    if (percent[1] !== '-' || cut >= 1) return `"${raw}" must lower the limit: a percentage from -0% to -99%`;
    return { kind: 'relative', cut };
  }
  if (RATE_KEYS.has(key)) {
    const parsed = typeof raw === 'string' ? rate.safeParse(raw) : undefined;
    if (!parsed?.success) return `"${raw}" is not a rate (10/s, 600/m), a percentage (-25%) or "observed"`;
    return { kind: 'absolute', value: (parsed.data.count * 1000) / parsed.data.perMs };
  }
  if (typeof raw !== 'number' || !Number.isInteger(raw) || raw < 1) return `"${raw}" is not a whole number of at least 1, a percentage (-25%) or "observed"`;
  return { kind: 'absolute', value: raw };
}

function settingsOf(rule: Partial<Record<keyof typeof pathSettingFields, unknown>>): PartialSettings {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(pathSettingFields)) if (rule[key as keyof typeof pathSettingFields] !== undefined) out[key] = rule[key as keyof typeof pathSettingFields];
  return out as PartialSettings;
}

function issuesToProblems(prefix: string, issues: readonly z.core.$ZodIssue[], raw?: unknown): RuleProblem[] {
  const id = (raw as { id?: unknown; name?: unknown } | null | undefined);
  const label = typeof id?.id === 'string' ? ` (rule "${id.id}")` : typeof id?.name === 'string' ? ` (provider "${id.name}")` : '';
  return issues.map((issue) => {
    const path = [prefix, ...issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`))].join('').replace(/^\./, '');
    if (issue.code === 'unrecognized_keys') return { path: issue.keys.map((k) => (path ? `${path}.${k}` : k)).join(', '), problem: `unknown key${issue.keys.length > 1 ? 's' : ''}${label}` };
    return { path: path || '(file)', problem: `${issue.message}${label}` };
  });
}
