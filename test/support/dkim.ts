import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dkimVerify } from 'mailauth/lib/dkim/verify.js';
import { loadKeys, txtRecord, type DkimKey } from '../../src/dkim/index.ts';

const SCRIPT = new URL('./dkim_verify.py', import.meta.url).pathname;

export interface TestKeys {
  readonly keys: DkimKey[];
  readonly entries: { domain: string; selector: string; key_file: string; algorithm: 'rsa-sha256' | 'ed25519-sha256'; fallback?: boolean }[];
  readonly txt: Record<string, string>;
}

/** RSA-2048 and Ed25519 keys for example.com written to dir, with the TXT records to publish. */
export function makeKeys(dir: string, domain = 'example.com'): TestKeys {
  const rsaFile = join(dir, `${domain}.rsa.pem`);
  const edFile = join(dir, `${domain}.ed.pem`);
  writeFileSync(rsaFile, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(edFile, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const entries = [
    { domain, selector: 'rsa1', key_file: rsaFile, algorithm: 'rsa-sha256' as const },
    { domain, selector: 'ed1', key_file: edFile, algorithm: 'ed25519-sha256' as const },
  ];
  const { keys } = loadKeys(entries);
  const txt = Object.fromEntries(keys.map((k) => [`${k.selector}._domainkey.${k.domain}.`, txtRecord(k)]));
  return { keys, entries, txt };
}

/** dkimpy's verdict for each signature, top first. */
export function verifyWithDkimpy(message: Buffer, txt: Record<string, string>, dir: string): boolean[] {
  const file = join(dir, `verify-${Date.now()}-${Math.random()}.eml`);
  const records = join(dir, 'txt.json');
  writeFileSync(file, message);
  writeFileSync(records, JSON.stringify(txt));
  return JSON.parse(execFileSync('/usr/bin/python3', [SCRIPT, file, records], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 })) as boolean[];
}

/** mailauth's verdict ("pass", "fail", "neutral"...) for each signature. */
export async function verifyWithMailauth(message: Buffer, txt: Record<string, string>): Promise<string[]> {
  const resolver = async (name: string, type: string) => {
    if (type !== 'TXT' || !txt[`${name}.`]) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
    return [[txt[`${name}.`] as string]];
  };
  const result = await dkimVerify(message, { resolver });
  return result.results.map((r: { status: { result: string } }) => r.status.result);
}
