/**
 * shaping: the MX rules. Static settings per provider (MX host suffix), site (MX host set) and
 * domain resolve to one immutable PathSettings per (source, site) path; adaptive rules turn what
 * receivers say into lowered limits, pauses or failures that expire and recover on their own;
 * one Limiter owns every connection lease and message grant. Delivery asks it before it connects
 * and sends and tells it what happened; it never waits on it. State survives restarts.
 */
import { EMPTY_RULES, combineRules, defaultShapingRules, loadShapingRulesFile, type LoadedRuleSet, type ParseOptions } from './rules.ts';

export { createShaper, type Shaper, type ShaperOptions, type ShaperDeps, type PathView } from './shaper.ts';
export { parseShapingRules, loadShapingRulesFile, defaultShapingRules, combineRules, type RuleSet, type AdaptiveRule, type LoadedRuleSet, type RuleProblem } from './rules.ts';
export { TIGHTENING, type Change, type SharedEffect } from './adaptive.ts';
export type { PathIdentity } from './paths.ts';
export { RemoteShaping, serveShard, type Channel, type ShardLink } from './remote.ts';
export { LIMIT_KEYS, SETTING_KEYS, baseSettings, formatRate } from './settings.ts';
export { Limiter } from './limiter.ts';

/** The rules in force: the operator's file (if any) over Tern's shipped defaults (unless switched off). */
export function loadRuleSet(options: { readonly rulesFile: string | undefined; readonly defaultRules: boolean } & ParseOptions): LoadedRuleSet {
  const shipped = options.defaultRules ? defaultShapingRules(options) : EMPTY_RULES;
  if (!options.rulesFile) return { ok: true, rules: shipped };
  const operator = loadShapingRulesFile(options.rulesFile, options);
  if (!operator.ok) return operator;
  return combineRules(operator.rules, shipped);
}
// Private: adaptive.ts (effects, triggers, recovery), limiter.ts, meters.ts, paths.ts, store.ts.
