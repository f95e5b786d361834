import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { Ajv } from 'ajv';
import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { freePort } from '../support/ports.ts';
import { ShiftedClock } from '../support/shifted-clock.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { makeTestCerts } from '../support/tls-certs.ts';
import { WebhookReceiver } from '../support/webhook-receiver.ts';
import { STANDARD_ZONE, startWorld, type World } from '../support/world.ts';

/**
 * TLS-RPT (RFC 8460) end to end: sessions under DANE to a domain that asks for reports, one that
 * meets its records and one that does not; a day later (a shifted clock), one report each to an
 * https: address (a loopback HTTPS receiver) and a mailto: address (mail through Tern's own queue
 * to a loopback sink), both gzipped JSON that RFC 8460's fields, as a JSON Schema, accept.
 */
const certs = makeTestCerts('mx.good.test', ['rua.reports.test']);
const spki = (pem: Buffer): Buffer => createHash('sha256').update(new X509Certificate(pem).publicKey.export({ type: 'spki', format: 'der' }) as Buffer).digest();
const schema = JSON.parse(readFileSync(new URL('../support/tlsrpt-schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);
const RUA_HOST = '127.0.0.52';
const dir = tempDir();
writeFileSync(join(dir.path, 'ca.pem'), certs.ca);

let world: World;
let tern: RunningTern;
let ruaPort: number;
const clock = new ShiftedClock();
const webhook = new WebhookReceiver('rpt');
const posted: { type: string; body: Buffer }[] = [];

/** A signed domain, its MX on `ip` with a DANE-EE record for `key`, asking for reports at both addresses. */
const zoneFor = (domain: string, ip: string, key: Buffer) => ({
  [domain]: { mx: [{ exchange: `mx.${domain}`, priority: 10 }], authenticated: true },
  [`mx.${domain}`]: { a: [ip], authenticated: true },
  [`_25._tcp.mx.${domain}`]: { tlsa: [{ usage: 3, selector: 1, matchingType: 1, data: spki(key) }], authenticated: true },
  [`_smtp._tls.${domain}`]: { txt: [`v=TLSRPTv1; rua=mailto:tlsrpt@reports.test,https://rua.reports.test:${ruaPort}/v1/tlsrpt`] },
});

t.before(async () => {
  ruaPort = await freePort([RUA_HOST]);
  world = await startWorld({
    ...STANDARD_ZONE,
    ...zoneFor('good.test', '127.0.0.53', certs.good.cert),
    ...zoneFor('bad.test', '127.0.0.54', certs.good.cert),
    'reports.test': { mx: [{ exchange: 'mx.reports.test', priority: 10 }] },
    'mx.reports.test': { a: ['127.0.0.55'] },
    'rua.reports.test': { a: [RUA_HOST] },
  }, [], ['127.0.0.53', '127.0.0.54', '127.0.0.55']);
  await world.addSink('127.0.0.53', { tls: certs.good });
  await world.addSink('127.0.0.54', { tls: certs.wrongName }); // another key than the record's
  await world.addSink('127.0.0.55');
  const named = certs.named['rua.reports.test'] as { key: Buffer; cert: Buffer };
  const https = createServer({ key: named.key, cert: named.cert }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      posted.push({ type: String(req.headers['content-type']), body: Buffer.concat(chunks) });
      res.writeHead(201).end();
    });
  });
  await new Promise<void>((resolve) => https.listen(ruaPort, RUA_HOST, resolve));
  t.teardown(() => {
    https.closeAllConnections();
    https.close();
  });
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: join(dir.path, 'spool'),
    delivery: { tls_ca_file: join(dir.path, 'ca.pem'), tls_rpt: { enabled: true, organization: 'tern.test' } },
    feedback: { webhook: { url: await webhook.start(), secret: 'rpt', max_wait: '20ms' } },
  }), clock);
});
t.teardown(async () => {
  await tern?.stop();
  await webhook.stop();
  await world?.close();
  dir.remove();
});

const reportOf = (gzipped: Buffer): Record<string, any> => JSON.parse(gunzipSync(gzipped).toString('utf8')) as Record<string, any>;

t.test('a day\'s sessions under DANE become one report per domain, to its https: and mailto: addresses', async (t) => {
  for (const rcpt of ['a@good.test', 'b@good.test', 'a@bad.test']) t.match(await sendMail(tern.smtpPort, 'news@campaign.test', [rcpt], message({ to: rcpt })), /^250 /);
  await until(() => ['a@good.test', 'b@good.test'].every((r) => webhook.acknowledged.some((e) => e.recipient === r && e.type === 'delivered')), 10_000, 'good.test delivered');
  await until(() => webhook.acknowledged.some((e) => e.recipient === 'a@bad.test' && e.type === 'soft_bounce'), 10_000, 'bad.test deferred');
  const day = new Date(clock.now()).toISOString().slice(0, 10);

  clock.jump(86_400_000 + 3_600_000);
  await until(() => posted.length >= 2, 15_000, 'two reports posted');
  for (const p of posted) {
    t.equal(p.type, 'application/tlsrpt+gzip');
    const report = reportOf(p.body);
    t.ok(validate(report), `the schema accepts it: ${JSON.stringify(validate.errors)}`);
    t.match(report, { 'organization-name': 'tern.test', 'date-range': { 'start-datetime': `${day}T00:00:00Z` }, 'contact-info': 'mailto:postmaster@tern.test' });
  }
  const byDomain = Object.fromEntries(posted.map((p) => reportOf(p.body)).map((r) => [r.policies[0].policy['policy-domain'], r.policies[0]]));
  t.match(byDomain['good.test'], { policy: { 'policy-type': 'tlsa', 'policy-string': [/^3 1 1 [0-9a-f]{64}$/] }, summary: { 'total-successful-session-count': 2, 'total-failure-session-count': 0 } });
  t.notOk('failure-details' in (byDomain['good.test'] as object));
  t.match(byDomain['bad.test'], { summary: { 'total-successful-session-count': 0 }, 'failure-details': [{ 'result-type': 'tlsa-invalid', 'receiving-mx-hostname': 'mx.bad.test', 'receiving-ip': '127.0.0.54' }] });
  t.ok((byDomain['bad.test'] as any).summary['total-failure-session-count'] >= 1);

  // The mailto: copies go through Tern's own queue to reports.test's MX.
  const sink = world.sinks.get('127.0.0.55');
  await until(() => (sink?.received.length ?? 0) >= 2, 15_000, 'two report mails delivered');
  for (const mail of sink?.received ?? []) {
    const text = mail.data.toString('utf8');
    t.same(mail.rcptTo, ['tlsrpt@reports.test']);
    t.match(text, /^Subject: Report Domain: (good|bad)\.test Submitter: tern\.test Report-ID: </m);
    t.match(text, /^Content-Type: multipart\/report; report-type="tlsrpt"/m);
    const body = /Content-Transfer-Encoding: base64\r\nContent-Disposition: [^\r]+\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n\r\n--/.exec(text)?.[1] ?? '';
    t.ok(validate(reportOf(Buffer.from(body.replace(/\r\n/g, ''), 'base64'))), 'the attachment is a report the schema accepts');
  }
  t.ok(tern.logs.some((l) => /TLS-RPT: report for good\.test \(.*\) sent to https:\/\/rua\.reports\.test/.test(l.msg)), 'logged');
});
