import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from '../support/daemon.ts';
import { verifyWithDkimpy } from '../support/dkim.ts';
import { startDnsZone, type DnsZone } from '../support/dns-zone.ts';
import { writeConfig } from '../support/child.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const dir = tempDir('tern-dkim-cli-');
let zone: DnsZone;
t.before(async () => {
  zone = await startDnsZone({});
});
t.teardown(async () => {
  await zone.close();
  dir.remove();
});

/** Asynchronous on purpose: the DNS zone answering `dkim check` lives in this process. */
const tern = (...args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
  execFile(process.execPath, [join(ROOT, 'bin/tern.js'), ...args], { encoding: 'utf8', cwd: dir.path }, (err, stdout, stderr) => {
    resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
  });
});

t.test('keygen writes a private key and prints the TXT record; check compares it with DNS', async (t) => {
  const made = await tern('dkim', 'keygen', '--domain', 'example.com', '--selector', 's2026', '--out', 'keys');
  t.equal(made.status, 0, made.stderr);
  const keyFile = join(dir.path, 'keys', 'example.com.s2026.pem');
  t.equal(statSync(keyFile).mode & 0o777, 0o600, 'private key readable by its owner only');
  const record = /IN TXT \( ("[^"]+"\s*)+\)/.exec(made.stdout)?.[0];
  t.ok(record, 'a TXT record in zone-file form');
  const txt = [...made.stdout.matchAll(/"([^"]+)"/g)].map((m) => m[1]).join('');
  t.match(txt, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/=]+$/);
  t.equal((await tern('dkim', 'keygen', '--domain', 'example.com', '--selector', 's2026', '--out', 'keys')).status, 2, 'never overwrites a key');
  t.equal((await tern('dkim', 'keygen', '--domain', 'example.com')).status, 2, 'selector required');

  const config = writeConfig(dir.path, {
    dns: { servers: [zone.server], timeout: '300ms', attempts: 1 },
    dkim: { keys: [{ domain: 'example.com', selector: 's2026', key_file: keyFile }] },
  });
  zone.set('s2026._domainkey.example.com', { txt: [txt] });
  const ok = await tern('dkim', 'check', '--config', config);
  t.equal(ok.status, 0, ok.stderr);
  t.match(ok.stdout, /s2026\._domainkey\.example\.com \(rsa-sha256\): ok/);

  // Publish some other key under the selector: the configured private key no longer matches.
  const other = await tern('dkim', 'keygen', '--domain', 'x.test', '--selector', 'y', '--out', 'keys');
  zone.set('s2026._domainkey.example.com', { txt: [[...other.stdout.matchAll(/"([^"]+)"/g)].map((m) => m[1]).join('')] });
  const bad = await tern('dkim', 'check', '--config', config);
  t.equal(bad.status, 1);
  t.match(bad.stdout, /MISMATCH/);
  zone.set('s2026._domainkey.example.com', {});
  t.match((await tern('dkim', 'check', '--config', config)).stdout, /no DKIM key record/);
});

t.test('an Ed25519 key from keygen signs verifiable mail', async (t) => {
  const made = await tern('dkim', 'keygen', '--domain', 'example.com', '--selector', 'ed', '--algorithm', 'ed25519-sha256', '--out', 'keys');
  t.equal(made.status, 0);
  const txt = /"([^"]+)"/.exec(made.stdout)?.[1] ?? '';
  t.match(txt, /^v=DKIM1; k=ed25519; p=[A-Za-z0-9+/=]{44}$/);
  const { loadKeys, createSigner } = await import('../../src/dkim/index.ts');
  const { keys } = loadKeys([{ domain: 'example.com', selector: 'ed', key_file: join(dir.path, 'keys', 'example.com.ed.pem'), algorithm: 'ed25519-sha256' }]);
  const message = Buffer.from('From: a@example.com\r\nSubject: s\r\n\r\nbody\r\n');
  const signing = createSigner(keys).begin(1000);
  signing.write(message);
  const sig = await signing.finish();
  t.same(verifyWithDkimpy(Buffer.concat([Buffer.from(sig), message]), { 'ed._domainkey.example.com.': txt }, dir.path), [true]);
});

t.test('check-config reports key problems by entry', async (t) => {
  const config = writeConfig(dir.path, { dkim: { keys: [{ domain: 'example.com', selector: 'gone', key_file: 'keys/missing.pem' }] } });
  const res = await tern('check-config', '--config', config);
  t.equal(res.status, 1);
  t.match(res.stderr, /dkim\.keys\[0\]\.key_file: cannot read .*missing\.pem: ENOENT/);
});
