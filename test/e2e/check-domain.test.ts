import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { join } from 'node:path';
import t from 'tap';
import { publicKeyData, txtRecord } from '../../src/dkim/index.ts';
import { writeConfig } from '../support/child.ts';
import { tempDir } from '../support/daemon.ts';
import { makeKeys } from '../support/dkim.ts';
import { startDnsZone, type DnsZone } from '../support/dns-zone.ts';

/**
 * `tern check-domain` as an operator runs it, against a loopback DNS zone: a domain set up right
 * passes, and each broken record is named on a FAIL line with exit status 1.
 */
const ROOT = new URL('../../', import.meta.url).pathname;
const dir = tempDir('tern-check-domain-');
const keys = makeKeys(dir.path, 'good.test');
let zone: DnsZone;
let config: string;

const GOOD = {
  'good.test': { txt: ['v=spf1 ip4:127.0.0.10 ip6:::1 -all', 'google-site-verification=abc'] },
  '_dmarc.good.test': { txt: ['v=DMARC1; p=reject; adkim=s; aspf=r'] },
  '_mta-sts.good.test': { txt: ['v=STSv1; id=20261206'] },
  'rsa1._domainkey.good.test': { txt: [keys.txt['rsa1._domainkey.good.test.'] as string] },
  'ed1._domainkey.good.test': { txt: [keys.txt['ed1._domainkey.good.test.'] as string] },
};

t.before(async () => {
  zone = await startDnsZone(GOOD);
  config = writeConfig(dir.path, { hostname: 'tern.test', dns: { servers: [zone.server], timeout: '300ms', attempts: 1 }, dkim: { keys: keys.entries } });
});
t.teardown(async () => {
  await zone.close();
  dir.remove();
});
const reset = (): void => {
  for (const [name, entry] of Object.entries(GOOD)) zone.set(name, entry);
};

/** Asynchronous: the DNS zone answering it lives in this process. */
const tern = (...args: string[]) => new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
  execFile(process.execPath, [join(ROOT, 'bin/tern.js'), 'check-domain', ...args, '--config', config], { encoding: 'utf8', cwd: dir.path }, (err, stdout, stderr) => {
    resolve({ status: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
  });
});

/** The FAIL lines of a run, by check name. */
const failing = (stdout: string): string[] => stdout.split('\n').filter((l) => l.startsWith('FAIL')).map((l) => l.slice(6).trim().split(/\s{2,}/)[0] as string);

t.test('a domain set up right passes every check, and says what it found', async (t) => {
  reset();
  const run = await tern('good.test', '--ip', '127.0.0.10', '--ip', '::1');
  t.equal(run.status, 0, 'exit 0');
  t.same(failing(run.stdout), []);
  for (const line of [
    /^PASS\s+dkim key rsa1\s+rsa1\._domainkey\.good\.test publishes the public half/m,
    /^PASS\s+dkim key ed1\s/m,
    /^PASS\s+dkim signature rsa1\s+pass by mailauth \(d=good\.test/m,
    /^PASS\s+dkim signature ed1\s+pass by mailauth/m,
    /^PASS\s+spf record\s+v=spf1 ip4:127\.0\.0\.10/m,
    /^PASS\s+spf 127\.0\.0\.10\s+authorised/m,
    /^PASS\s+spf ::1\s+authorised/m,
    /^PASS\s+dmarc record\s+v=DMARC1; p=reject; adkim=s; aspf=r \(policy reject\)/m,
    /^PASS\s+dmarc 127\.0\.0\.10\s+aligned through DKIM \(good\.test\) and SPF \(good\.test\)/m,
    /^INFO\s+mta-sts\s+_mta-sts\.good\.test: v=STSv1; id=20261206/m,
    /^INFO\s+tls-rpt\s+none published/m,
    /^INFO\s+bimi\s+none published/m,
    /^ok: nothing failed$/m,
  ]) t.match(run.stdout, line);

  const json = await tern('good.test', '--ip', '127.0.0.10', '--json');
  t.equal(json.status, 0);
  const report = JSON.parse(json.stdout) as { ok: boolean; domain: string; checks: { check: string; result: string }[] };
  t.match(report, { ok: true, domain: 'good.test' });
  t.ok(report.checks.some((c) => c.check === 'spf 127.0.0.10' && c.result === 'pass'), 'the same checks, as JSON');
});

t.test('an address SPF does not authorise is named; DMARC still passes on DKIM', async (t) => {
  reset();
  const run = await tern('good.test', '--ip', '127.0.0.11');
  t.equal(run.status, 1);
  t.same(failing(run.stdout), ['spf 127.0.0.11']);
  t.match(run.stdout, /^FAIL\s+spf 127\.0\.0\.11\s+fail: not authorised to send for good\.test/m);
  t.match(run.stdout, /^1 check failed$/m);
  const none = await tern('good.test');
  t.match(none.stdout, /^WARN\s+spf\s+no --ip given/m, 'without --ip, a warning, not a pass');
  t.equal(none.status, 0);
});

t.test('a selector publishing another key fails its key check and its signature', async (t) => {
  reset();
  const other = generateKeyPairSync('ed25519').privateKey;
  zone.set('ed1._domainkey.good.test', { txt: [txtRecord({ algorithm: 'ed25519-sha256', publicKeyData: publicKeyData(other) })] });
  const run = await tern('good.test', '--ip', '127.0.0.10');
  t.equal(run.status, 1);
  t.same(failing(run.stdout), ['dkim key ed1', 'dkim signature ed1']);
  t.match(run.stdout, /MISMATCH/);
  zone.set('rsa1._domainkey.good.test', {});
  const neither = await tern('good.test', '--ip', '127.0.0.10');
  t.same(failing(neither.stdout), ['dkim key rsa1', 'dkim key ed1', 'dkim signature rsa1', 'dkim signature ed1'], 'no signature verifies');
  t.match(neither.stdout, /^PASS\s+dmarc 127\.0\.0\.10\s+aligned through SPF/m, 'DMARC passes on aligned SPF alone, as receivers would judge it');
  const alone = await tern('good.test');
  t.same(failing(alone.stdout), ['dkim key rsa1', 'dkim key ed1', 'dkim signature rsa1', 'dkim signature ed1', 'dmarc'], 'judged on DKIM alone, DMARC fails');
});

t.test('no DMARC record, no SPF record, two SPF records: each named', async (t) => {
  reset();
  zone.set('_dmarc.good.test', {});
  let run = await tern('good.test', '--ip', '127.0.0.10');
  t.same(failing(run.stdout), ['dmarc record', 'dmarc 127.0.0.10']);
  reset();
  zone.set('good.test', { txt: ['google-site-verification=abc'] });
  run = await tern('good.test', '--ip', '127.0.0.10');
  t.ok(failing(run.stdout).includes('spf record'));
  t.match(run.stdout, /publishes no SPF record/);
  zone.set('good.test', { txt: ['v=spf1 -all', 'v=spf1 ip4:127.0.0.10 -all'] });
  run = await tern('good.test', '--ip', '127.0.0.10');
  t.match(run.stdout, /^FAIL\s+spf record\s+good\.test publishes 2 SPF records/m);
});

t.test('mail from a domain with no key of its own: unsigned, and DMARC cannot align on DKIM', async (t) => {
  reset();
  const run = await tern('good.test', '--from', 'news@other.test', '--ip', '127.0.0.10');
  t.equal(run.status, 1);
  t.match(run.stdout, /^FAIL\s+dkim\.keys\s+no key in dkim\.keys signs mail from other\.test/m);
  t.equal((await tern('not a domain')).status, 2, 'a bad argument is a usage error');
  t.match((await tern('good.test', '--ip', '300.1.1.1')).stderr, /--ip 300\.1\.1\.1 is not an IPv4 or IPv6 address/);
});
