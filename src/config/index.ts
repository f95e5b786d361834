/**
 * config: YAML text → a validated, read-only Config. Every problem is reported with its key path
 * (smtp.listen[0]); unknown keys are errors. No file means built-in defaults.
 */
export { loadConfig, parseConfigText, resolveConfigPath, validateConfig, type ConfigProblem, type Loaded } from './load.ts';
import type { Config } from './schema.ts';
export type { Config, SmtpConfig, DeliveryConfig, DnsConfig, SpoolConfig, ShapingDefaults } from './schema.ts';
export { pathSettingFields } from './schema.ts';
export type { EgressConfig } from './egress.ts';
export { duration, rate } from './fields.ts';
export { LIVE_KEYS, changedKeys, sortChanges } from './changes.ts';

/** With cluster.redis, this node's name in its fleet (cluster.node, else the host name); else undefined. */
export function fleetNodeName(config: Config): string | undefined {
  return config.cluster.redis ? config.cluster.node || config.hostname : undefined;
}
