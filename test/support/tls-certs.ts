import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface KeyPair { readonly key: Buffer; readonly cert: Buffer }

/** A local CA and the server certificates the TLS level tests need, made with openssl now. */
export interface TestCerts {
  readonly ca: Buffer;
  /** Signed by the CA for the MX name. */
  readonly good: KeyPair;
  /** Signed by the CA for the MX name, expired a day before it began. */
  readonly expired: KeyPair;
  /** Signed by the CA for another name. */
  readonly wrongName: KeyPair;
  /** For the MX name, signed by itself. */
  readonly selfSigned: KeyPair;
  /** Signed by the CA for each of the other names asked for (an MTA-STS policy host, more MX hosts). */
  readonly named: Readonly<Record<string, KeyPair>>;
  /** Signed by the CA for each of the expired names asked for, expired from the start. */
  readonly expiredNamed: Readonly<Record<string, KeyPair>>;
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

export function makeTestCerts(mxName: string, others: readonly string[] = [], expiredOthers: readonly string[] = []): TestCerts {
  const dir = mkdtempSync(join(tmpdir(), 'tern-certs-'));
  try {
    const at = (name: string): string => join(dir, name);
    const openssl = (...args: string[]): void => void execFileSync('openssl', args, { stdio: 'pipe' });
    openssl('req', '-x509', ...EC, '-keyout', at('ca.key'), '-out', at('ca.crt'), '-days', '30', '-subj', '/CN=Tern Test CA',
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
    let serial = 1;
    const signed = (name: string, dnsName: string, days: number): KeyPair => {
      writeFileSync(at(`${name}.ext`), `subjectAltName=DNS:${dnsName}\nbasicConstraints=CA:FALSE\n`);
      openssl('req', ...EC, '-keyout', at(`${name}.key`), '-out', at(`${name}.csr`), '-subj', `/CN=${dnsName}`);
      openssl('x509', '-req', '-in', at(`${name}.csr`), '-CA', at('ca.crt'), '-CAkey', at('ca.key'), '-set_serial', String(serial++),
        '-days', String(days), '-extfile', at(`${name}.ext`), '-out', at(`${name}.crt`));
      return { key: readFileSync(at(`${name}.key`)), cert: readFileSync(at(`${name}.crt`)) };
    };
    const good = signed('good', mxName, 30);
    // -days -1: notAfter a day before notBefore, so the certificate is expired from the start.
    const expired = signed('expired', mxName, -1);
    const wrongName = signed('wrong', `other.${mxName}`, 30);
    openssl('req', '-x509', ...EC, '-keyout', at('self.key'), '-out', at('self.crt'), '-days', '30', '-subj', `/CN=${mxName}`, '-addext', `subjectAltName=DNS:${mxName}`);
    const selfSigned = { key: readFileSync(at('self.key')), cert: readFileSync(at('self.crt')) };
    const named = Object.fromEntries(others.map((name, i) => [name, signed(`named${i}`, name, 30)]));
    const expiredNamed = Object.fromEntries(expiredOthers.map((name, i) => [name, signed(`expired${i}`, name, -1)]));
    return { ca: readFileSync(at('ca.crt')), good, expired, wrongName, selfSigned, named, expiredNamed };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
