/**
 * The value types of Tern's YAML files (durations, sizes, rates, host names), as zod schemas that
 * turn text into numbers and report bad text in words; shared by tern.yaml and the rule files.
 */
import { z } from 'zod';
import { parseDuration, parseRate, parseSize, type Rate } from '../lib/units.ts';
import { parseCidr, parseHostPort } from '../lib/net.ts';
import { TLS_ALIASES, TLS_LEVELS, tlsLevel } from '../model/path.ts';

export const duration = z.string().transform((text, ctx) => {
  const ms = parseDuration(text);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration (examples: 90s, 20m, 4h, 3d)` });
    return z.NEVER;
  }
  return ms;
});

export const size = z.union([z.number().int().positive(), z.string()]).transform((value, ctx) => {
  const bytes = typeof value === 'number' ? value : parseSize(value);
  if (bytes === undefined || bytes <= 0) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (examples: 25MB, 512KiB)` });
    return z.NEVER;
  }
  return bytes;
});

export const rate = z.string().transform((text, ctx): Rate => {
  const parsed = parseRate(text);
  if (!parsed) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a rate (examples: 100/s, 6000/h)` });
    return z.NEVER;
  }
  return parsed;
});

export const hostPort = z.string().refine((s) => parseHostPort(s) !== undefined, {
  message: 'must be "host:port" (for example "127.0.0.1:2525" or "[::1]:2525")',
});

export const cidr = z.string().refine((s) => parseCidr(s) !== undefined, {
  message: 'must be an address or CIDR network (for example "127.0.0.0/8")',
});

export const hostname = z.string().regex(/^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i, {
  message: 'must be a host name such as mta.example.com',
});

/** An outbound TLS level (docs/tls.md); the old names (opportunistic, required, disabled) are read as may, encrypt, none. */
export const tlsPolicy = z.enum([...TLS_LEVELS, ...(Object.keys(TLS_ALIASES) as (keyof typeof TLS_ALIASES)[])]).transform(tlsLevel);
