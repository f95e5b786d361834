import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../config/index.ts';
import { loadKeys, publicKeyData, txtRecord, type DkimAlgorithm } from '../dkim/index.ts';
import { createResolver } from '../dns/index.ts';
import { systemClock } from '../lib/clock.ts';
import type { Io } from './cli.ts';

const ALGORITHMS: readonly DkimAlgorithm[] = ['rsa-sha256', 'ed25519-sha256'];

/** `tern dkim keygen --domain D --selector S [--algorithm A] [--bits N] [--out DIR]` */
export function keygen(args: readonly string[], io: Io): number {
  const { values } = parseArgs({
    args: [...args],
    options: { domain: { type: 'string' }, selector: { type: 'string' }, algorithm: { type: 'string', default: 'rsa-sha256' }, bits: { type: 'string', default: '2048' }, out: { type: 'string', default: '.' } },
    strict: true,
  });
  const algorithm = values.algorithm as DkimAlgorithm;
  const bits = Number(values.bits);
  if (!values.domain || !values.selector) return usage(io, '--domain and --selector are required');
  if (!ALGORITHMS.includes(algorithm)) return usage(io, `--algorithm must be ${ALGORITHMS.join(' or ')}`);
  if (algorithm === 'rsa-sha256' && (!Number.isInteger(bits) || bits < 1024 || bits > 8192)) return usage(io, '--bits must be 1024 to 8192 (2048 recommended)');
  const dir = resolve(io.cwd, values.out);
  const file = join(dir, `${values.domain}.${values.selector}.pem`);
  if (existsSync(file)) return usage(io, `${file} exists; not overwriting a key`);
  const { privateKey } = algorithm === 'rsa-sha256' ? generateKeyPairSync('rsa', { modulusLength: bits }) : generateKeyPairSync('ed25519');
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const record = txtRecord({ algorithm, publicKeyData: publicKeyData(privateKey) });
  io.out(`private key: ${file}`);
  io.out(`publish this TXT record:`);
  io.out(`${values.selector}._domainkey.${values.domain}. IN TXT ${zoneStrings(record)}`);
  io.out(`config:  - { domain: ${values.domain}, selector: ${values.selector}, key_file: ${file}, algorithm: ${algorithm} }`);
  return 0;
}

/** Zone files take TXT data as quoted strings of at most 255 characters. */
function zoneStrings(record: string): string {
  const parts = record.match(/.{1,255}/g) ?? [record];
  return parts.length === 1 ? `"${record}"` : `( ${parts.map((p) => `"${p}"`).join('\n    ')} )`;
}

/** `tern dkim check`: does each configured selector publish the public half of its key? */
export async function check(config: Config, io: Io): Promise<number> {
  const { keys, problems } = loadKeys(config.dkim.keys);
  for (const p of problems) io.err(`${p.path}: ${p.problem}`);
  const resolver = createResolver(config.dns, systemClock);
  let failures = problems.length;
  for (const key of keys) {
    const name = `${key.selector}._domainkey.${key.domain}`;
    const answer = await resolver.resolveTxt(name);
    const verdict = answer.kind === 'txt' ? compare(answer.records, key.publicKeyData) : answer.kind === 'nxdomain' ? 'no TXT record (NXDOMAIN)' : `DNS error: ${answer.detail}`;
    if (verdict !== 'ok') failures++;
    io.out(`${name} (${key.algorithm}): ${verdict}`);
  }
  return failures === 0 ? 0 : 1;
}

/** Whether TXT records publish `expected` (a key's public half): "ok", or what is wrong. */
export function compare(records: readonly string[], expected: string): string {
  const dkim = records.filter((r) => /(^|;)\s*p=/.test(r));
  if (dkim.length === 0) return 'no DKIM key record (no p= tag)';
  const published = dkim.map((r) => /(?:^|;)\s*p=([^;]*)/.exec(r)?.[1]?.replace(/\s+/g, '') ?? '');
  if (published.includes(expected)) return 'ok';
  if (published.includes('')) return 'key revoked (empty p=)';
  return 'MISMATCH: the published key is not the public half of the configured private key';
}

function usage(io: Io, problem: string): number {
  io.err(`tern dkim: ${problem}`);
  return 2;
}
