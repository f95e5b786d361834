import type { Config } from '../config/index.ts';
import type { Rate } from '../lib/units.ts';
import type { PathSettings } from '../model/path.ts';

/** The limits an adaptive rule may lower; the rest of a path's settings only static rules set. */
export const LIMIT_KEYS = ['max_connections', 'max_messages_per_connection', 'max_message_rate', 'max_connection_rate', 'max_recipients_per_message'] as const;
export type LimitKey = (typeof LIMIT_KEYS)[number];
export const RATE_KEYS: ReadonlySet<LimitKey> = new Set(['max_message_rate', 'max_connection_rate']);

export const SETTING_KEYS = [...LIMIT_KEYS, 'connect_timeout', 'greeting_timeout', 'idle_timeout', 'tls'] as const;
export type SettingKey = (typeof SETTING_KEYS)[number];

/** The bottom layer of every path: shaping.defaults, with delivery's timeouts and TLS where it is silent. */
export function baseSettings(config: Pick<Config, 'shaping' | 'delivery'>): PathSettings {
  const d = config.shaping.defaults;
  const t = config.delivery.timeouts;
  return {
    max_connections: d.max_connections,
    max_messages_per_connection: d.max_messages_per_connection,
    max_message_rate: d.max_message_rate,
    max_connection_rate: d.max_connection_rate,
    max_recipients_per_message: d.max_recipients_per_message,
    connect_timeout: d.connect_timeout ?? t.connect,
    greeting_timeout: d.greeting_timeout ?? t.greeting,
    idle_timeout: d.idle_timeout ?? t.idle,
    tls: d.tls ?? config.delivery.tls,
  };
}

export type PartialSettings = { readonly [K in SettingKey]?: PathSettings[K] };

/** One layer of static rules that applies to a path, most general first. */
export interface Layer { readonly name: string; readonly settings: PartialSettings }

/** The value of each key and the rule that set it ("defaults", "provider:gmail", "domain:x"). */
export interface Resolved {
  readonly settings: PathSettings;
  readonly from: { readonly [K in SettingKey]: string };
}

/** Most specific wins: each layer overrides only the keys it names. */
export function resolveLayers(base: PathSettings, layers: readonly Layer[]): Resolved {
  const settings: Record<string, unknown> = { ...base };
  const from: Record<string, string> = Object.fromEntries(SETTING_KEYS.map((k) => [k, 'defaults']));
  for (const layer of layers) {
    for (const key of SETTING_KEYS) {
      const value = layer.settings[key];
      if (value === undefined) continue;
      settings[key] = value;
      from[key] = layer.name;
    }
  }
  return { settings: settings as unknown as PathSettings, from: from as Resolved['from'] };
}

/**
 * A limit as one number: counts as they are, rates in messages (or connections) per second,
 * Infinity for "unlimited". Adaptive arithmetic is done on these.
 */
export function limitValue(settings: PathSettings, key: LimitKey): number {
  const value = settings[key];
  if (value === undefined) return Infinity;
  return typeof value === 'number' ? value : (value.count * 1000) / value.perMs;
}

/** The inverse of limitValue for one key. */
export function withLimit(settings: PathSettings, key: LimitKey, value: number): PathSettings {
  if (!RATE_KEYS.has(key)) return { ...settings, [key]: Math.max(1, Math.floor(value)) };
  return { ...settings, [key]: Number.isFinite(value) ? perSecond(value) : undefined };
}

/** Rates kept to three significant figures so views and logs stay readable. */
export function perSecond(value: number): Rate {
  const rounded = Number(value.toPrecision(3));
  return rounded >= 1 ? { count: rounded, perMs: 1000 } : { count: Number((rounded * 60).toPrecision(3)), perMs: 60_000 };
}

export function formatRate(rate: Rate | undefined): string {
  if (!rate) return 'unlimited';
  const units: [number, string][] = [[1000, 's'], [60_000, 'm'], [3_600_000, 'h'], [86_400_000, 'd']];
  const unit = units.find(([ms]) => ms === rate.perMs);
  return unit ? `${rate.count}/${unit[1]}` : `${rate.count}/${rate.perMs}ms`;
}

/** A setting as the admin API and logs show it: rates as "10/s", durations in ms. */
export function showSetting(settings: PathSettings, key: SettingKey): number | string {
  const value = settings[key];
  if (RATE_KEYS.has(key as LimitKey)) return formatRate(value as Rate | undefined);
  return value as number | string;
}
