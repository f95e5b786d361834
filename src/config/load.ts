import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, dirname, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, type Config } from './schema.ts';

export interface ConfigProblem {
  /** Key path such as "smtp.listen[0]". */
  readonly path: string;
  readonly problem: string;
}

export type Loaded =
  | { readonly ok: true; readonly config: Config; readonly source: string }
  | { readonly ok: false; readonly problems: readonly ConfigProblem[]; readonly source: string };

/** --config, then $TERN_CONFIG, then config/tern.yaml; no file at all means built-in defaults. */
export function resolveConfigPath(explicit: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string | undefined {
  if (explicit) return resolve(cwd, explicit);
  if (env.TERN_CONFIG) return resolve(cwd, env.TERN_CONFIG);
  const fallback = resolve(cwd, 'config/tern.yaml');
  return existsSync(fallback) ? fallback : undefined;
}

export function loadConfig(path: string | undefined): Loaded {
  if (path === undefined) return validateConfig({}, '(built-in defaults)', process.cwd());
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, source: path, problems: [{ path: '(file)', problem: `cannot read ${path}: ${(err as Error).message}` }] };
  }
  return parseConfigText(text, path);
}

export function parseConfigText(text: string, source: string): Loaded {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return { ok: false, source, problems: doc.errors.map((e) => ({ path: '(yaml)', problem: e.message.split('\n')[0] ?? e.message })) };
  }
  const raw: unknown = doc.toJS() ?? {};
  return validateConfig(raw, source, dirname(resolve(source)));
}

export function validateConfig(raw: unknown, source: string, baseDir: string, env: NodeJS.ProcessEnv = process.env): Loaded {
  const result = configSchema.safeParse(withEnvironment(raw, env), { reportInput: true });
  if (!result.success) {
    return { ok: false, source, problems: result.error.issues.map(toProblem) };
  }
  return { ok: true, source, config: resolvePaths(result.data, baseDir) };
}

/**
 * $TERN_ADMIN_TOKEN, when set, is admin.token: a secret kept out of the config file (a container's
 * environment, a systemd credential). Anything but a mapping is left for the schema to refuse.
 */
function withEnvironment(raw: unknown, env: NodeJS.ProcessEnv): unknown {
  const token = env.TERN_ADMIN_TOKEN;
  if (token === undefined || token === '' || typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const root = raw as Record<string, unknown>;
  const admin = root.admin;
  if (admin !== undefined && (typeof admin !== 'object' || admin === null || Array.isArray(admin))) return raw;
  return { ...root, admin: { ...(admin as Record<string, unknown> | undefined), token } };
}

function toProblem(issue: z.core.$ZodIssue): ConfigProblem {
  const path = formatPath(issue.path);
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
    return { path: keys.join(', '), problem: `unknown key${keys.length > 1 ? 's' : ''}` };
  }
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return { path: path || '(root)', problem: 'is required' };
  }
  return { path: path || '(root)', problem: issue.message };
}

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out === '' ? String(part) : `.${String(part)}`;
  }
  return out;
}

/** Relative file paths in the config are relative to the config file, as operators expect. */
function resolvePaths(config: Config, baseDir: string): Config {
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  return {
    ...config,
    spool: { ...config.spool, dir: abs(config.spool.dir) },
    admin: { ...config.admin, state_dir: abs(config.admin.state_dir || join(config.spool.dir, 'admin')) },
    smtp: { ...config.smtp, ...(config.smtp.tls ? { tls: { cert: abs(config.smtp.tls.cert), key: abs(config.smtp.tls.key) } } : {}) },
    delivery: {
      ...config.delivery,
      ...(config.delivery.tls_ca_file ? { tls_ca_file: abs(config.delivery.tls_ca_file) } : {}),
      mta_sts: { ...config.delivery.mta_sts, state_dir: abs(config.delivery.mta_sts.state_dir || join(config.spool.dir, 'tls-policy')) },
    },
    dkim: { keys: config.dkim.keys.map((k) => ({ ...k, key_file: abs(k.key_file) })) },
    bounce: { ...config.bounce, ...(config.bounce.rules_file ? { rules_file: abs(config.bounce.rules_file) } : {}) },
    shaping: {
      ...config.shaping,
      ...(config.shaping.rules_file ? { rules_file: abs(config.shaping.rules_file) } : {}),
      state_dir: abs(config.shaping.state_dir || join(config.spool.dir, 'shaping')),
    },
    suppression: { ...config.suppression, state_dir: abs(config.suppression.state_dir || join(config.spool.dir, 'suppression')) },
    egress: { ...config.egress, state_dir: abs(config.egress.state_dir || join(config.spool.dir, 'egress')) },
    feedback: {
      ...config.feedback,
      dir: abs(config.feedback.dir || join(config.spool.dir, 'feedback')),
      ...(config.feedback.log ? { log: { ...config.feedback.log, path: abs(config.feedback.log.path) } } : {}),
    },
  };
}
