import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { isReason, type Reason } from './reasons.ts';
import { STAGES, type Stage } from './normalize.ts';

/** A rule as compiled: every condition that is present must hold, then the first match wins. */
export interface Rule {
  readonly id: string;
  readonly reason: Reason;
  readonly match?: RegExp;
  readonly codes?: readonly string[];
  readonly enhanced?: readonly string[];
  readonly stages?: readonly Stage[];
  readonly origin?: 'local' | 'remote';
  readonly retry?: boolean;
  /** The receiver says these words for this reason only, at whatever stage (see classify.ts). */
  readonly believe?: boolean;
}

export interface RuleProblem { readonly path: string; readonly problem: string }
export type LoadedRules = { readonly ok: true; readonly rules: readonly Rule[] } | { readonly ok: false; readonly problems: readonly RuleProblem[] };

const codePattern = z.union([z.number().int().min(200).max(599), z.string().regex(/^[245][0-9x][0-9x]$/i, 'must be a reply code such as 550, 55x or 5xx')]);
const enhancedPattern = z.string().regex(/^([245]|\*)\.(\d{1,3}|\*)\.(\d{1,3}|\*)$/, 'must be an enhanced status code such as 5.1.1 or 5.7.*');

const ruleSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, dots, dashes'),
  reason: z.string().refine(isReason, 'is not a known reason (see docs/bounces.md)'),
  match: z.string().min(1).optional(),
  code: z.array(codePattern).min(1).optional(),
  enhanced: z.array(enhancedPattern).min(1).optional(),
  stage: z.array(z.enum(STAGES)).min(1).optional(),
  origin: z.enum(['local', 'remote']).optional(),
  retry: z.boolean().optional(),
  believe: z.boolean().optional(),
  source: z.string().optional(),
  note: z.string().optional(),
}).refine((r) => r.match !== undefined || r.code !== undefined || r.enhanced !== undefined, 'needs at least one of match, code, enhanced');

const fileSchema = z.strictObject({ rules: z.array(z.unknown()) });

/** Parse and check a rules document; every problem names its place, e.g. `rules[3].match`. */
export function parseRules(text: string): LoadedRules {
  const doc = parseDocument(text, { prettyErrors: false });
  if (doc.errors.length > 0) return { ok: false, problems: doc.errors.map((e) => ({ path: '(yaml)', problem: e.message })) };
  const file = fileSchema.safeParse(doc.toJS());
  if (!file.success) return { ok: false, problems: [{ path: '(file)', problem: 'must be a mapping with a "rules" list' }] };
  const problems: RuleProblem[] = [];
  const rules: Rule[] = [];
  const seen = new Set<string>();
  file.data.rules.forEach((raw, index) => {
    const at = `rules[${index}]`;
    const parsed = ruleSchema.safeParse(raw);
    if (!parsed.success) {
      const id = (raw as { id?: unknown } | null)?.id;
      const named = typeof id === 'string' ? ` (rule "${id}")` : '';
      for (const issue of parsed.error.issues) problems.push({ path: [at, ...issue.path.map(String)].join('.').replace(/\.(\d+)(?=\.|$)/g, '[$1]'), problem: `${issue.message}${named}` });
      return;
    }
    const r = parsed.data;
    if (seen.has(r.id)) problems.push({ path: `${at}.id`, problem: `duplicate id "${r.id}"` });
    seen.add(r.id);
    let match: RegExp | undefined;
    if (r.match !== undefined) {
      try {
        match = new RegExp(r.match, 'i');
      } catch (err) {
        problems.push({ path: `${at}.match`, problem: `invalid regular expression (rule "${r.id}"): ${(err as Error).message}` });
        return;
      }
    }
    rules.push({
      id: r.id,
      reason: r.reason as Reason,
      ...(match ? { match } : {}),
      ...(r.code ? { codes: r.code.map((c) => String(c).toLowerCase()) } : {}),
      ...(r.enhanced ? { enhanced: r.enhanced } : {}),
      ...(r.stage ? { stages: r.stage } : {}),
      ...(r.origin ? { origin: r.origin } : {}),
      ...(r.retry === undefined ? {} : { retry: r.retry }),
      ...(r.believe ? { believe: true } : {}),
    });
  });
  return problems.length > 0 ? { ok: false, problems } : { ok: true, rules };
}

export function loadRulesFile(path: string): LoadedRules {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, problems: [{ path: '(file)', problem: `cannot read ${path}: ${(err as Error).message}` }] };
  }
  return parseRules(text);
}

/** The rules shipped with Tern (src/bounce/default-rules.yaml, copied beside the build). */
export function defaultRules(): readonly Rule[] {
  const loaded = loadRulesFile(new URL('./default-rules.yaml', import.meta.url).pathname);
  if (!loaded.ok) throw new Error(`default bounce rules are invalid: ${loaded.problems.map((p) => `${p.path}: ${p.problem}`).join('; ')}`);
  return loaded.rules;
}

/** The operator's rules (`bounce.rules_file`) first, then Tern's; problems named by the config key. */
export function loadBounceRules(file: string | undefined): { rules: readonly Rule[]; problems: RuleProblem[] } {
  if (!file) return { rules: defaultRules(), problems: [] };
  const loaded = loadRulesFile(file);
  if (!loaded.ok) return { rules: [], problems: loaded.problems.map((p) => ({ path: `bounce.rules_file: ${p.path}`, problem: p.problem })) };
  return { rules: [...loaded.rules, ...defaultRules()], problems: [] };
}
