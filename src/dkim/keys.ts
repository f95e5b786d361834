import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

export type DkimAlgorithm = 'rsa-sha256' | 'ed25519-sha256';

export interface DkimKeyConfig {
  readonly domain: string;
  readonly selector: string;
  readonly key_file: string;
  readonly algorithm: DkimAlgorithm;
  /** Sign mail from domains with no key of their own with this key. */
  readonly fallback?: boolean;
}

export interface DkimKey {
  readonly domain: string;
  readonly selector: string;
  readonly algorithm: DkimAlgorithm;
  readonly fallback: boolean;
  readonly privateKey: KeyObject;
  /** base64 SubjectPublicKeyInfo (RSA) or raw 32-byte key (Ed25519), as published in p=. */
  readonly publicKeyData: string;
}

export interface KeyProblem { readonly path: string; readonly problem: string }

const MIN_RSA_BITS = 1024;

/** Load and check every key; problems name the entry (dkim.keys[1].key_file: ...). */
export function loadKeys(entries: readonly DkimKeyConfig[]): { keys: DkimKey[]; problems: KeyProblem[] } {
  const keys: DkimKey[] = [];
  const problems: KeyProblem[] = [];
  entries.forEach((entry, i) => {
    const path = `dkim.keys[${i}].key_file`;
    let pem: Buffer;
    try {
      pem = readFileSync(entry.key_file);
    } catch (err) {
      problems.push({ path, problem: `cannot read ${entry.key_file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      return;
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(pem);
    } catch (err) {
      problems.push({ path, problem: `${entry.key_file} is not a PEM private key (${(err as Error).message})` });
      return;
    }
    const problem = checkKey(privateKey, entry.algorithm);
    if (problem) {
      problems.push({ path, problem: `${entry.key_file}: ${problem}` });
      return;
    }
    keys.push({
      domain: entry.domain.toLowerCase(),
      selector: entry.selector,
      algorithm: entry.algorithm,
      fallback: entry.fallback ?? false,
      privateKey,
      publicKeyData: publicKeyData(privateKey),
    });
  });
  return { keys, problems };
}

function checkKey(key: KeyObject, algorithm: DkimAlgorithm): string | undefined {
  const type = key.asymmetricKeyType;
  if (algorithm === 'rsa-sha256') {
    if (type !== 'rsa') return `algorithm rsa-sha256 needs an RSA key, this is ${type}`;
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) return `RSA key of ${bits} bits is too weak (at least ${MIN_RSA_BITS}; 2048 recommended)`;
  } else if (type !== 'ed25519') {
    return `algorithm ed25519-sha256 needs an Ed25519 key, this is ${type}`;
  }
  return undefined;
}

export function publicKeyData(privateKey: KeyObject): string {
  const der = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  // RFC 8463: an Ed25519 p= is the bare 32-byte key, not the SPKI structure.
  return (privateKey.asymmetricKeyType === 'ed25519' ? der.subarray(der.length - 32) : der).toString('base64');
}

/** The TXT record to publish at <selector>._domainkey.<domain>. */
export function txtRecord(key: Pick<DkimKey, 'algorithm' | 'publicKeyData'>): string {
  return `v=DKIM1; k=${key.algorithm === 'ed25519-sha256' ? 'ed25519' : 'rsa'}; p=${key.publicKeyData}`;
}

/**
 * Keys that sign for a From domain: its own, else those of its closest configured parent,
 * else the fallback keys. Several keys for one domain all sign (RSA and Ed25519 dual signing).
 */
export function keysFor(keys: readonly DkimKey[], fromDomain: string | undefined): DkimKey[] {
  if (fromDomain) {
    const labels = fromDomain.toLowerCase().split('.');
    for (let i = 0; i < labels.length - 1; i++) {
      const candidate = labels.slice(i).join('.');
      const matching = keys.filter((k) => k.domain === candidate);
      if (matching.length > 0) return matching;
    }
  }
  return keys.filter((k) => k.fallback);
}
