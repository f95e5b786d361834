import { readFileSync } from 'node:fs';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Ajv } from 'ajv';
import t from 'tap';
import { buildReport, countSession, mergeDays, parseTlsRptRecord, reportMail, sessionOf, type DayCounts } from '../../src/tls-policy/tlsrpt.ts';

/** RFC 8460's report, made from counted sessions and checked against the RFC's fields as a JSON Schema. */
const schema = JSON.parse(readFileSync(new URL('../support/tlsrpt-schema.json', import.meta.url), 'utf8')) as object;
const validate = new Ajv({ allErrors: true, strict: false, validateFormats: false }).compile(schema);

t.test('the _smtp._tls record: one v=TLSRPTv1 record with mailto: and https: addresses', async (t) => {
  t.same(parseTlsRptRecord(['v=TLSRPTv1; rua=mailto:tlsrpt@example.com,https://reports.example.com/v1']), { ok: true, value: { rua: ['mailto:tlsrpt@example.com', 'https://reports.example.com/v1'] } });
  t.same(parseTlsRptRecord(['v=TLSRPTv1;rua=mailto:a%2Bb@example.com']), { ok: true, value: { rua: ['mailto:a+b@example.com'] } }, 'percent-encoded, as a URI');
  t.match(parseTlsRptRecord(['v=spf1 -all']), { ok: false, error: 'no v=TLSRPTv1 record' });
  t.match(parseTlsRptRecord(['v=TLSRPTv1; rua=mailto:a@b.test', 'v=TLSRPTv1; rua=mailto:c@d.test']), { ok: false, error: /2 v=TLSRPTv1 records/ });
  t.match(parseTlsRptRecord(['v=TLSRPTv1;']), { ok: false, error: 'no rua= field' });
  t.match(parseTlsRptRecord(['v=TLSRPTv1; rua=http://insecure.test/,ftp://x']), { ok: false, error: /no mailto: or https: address/ }, 'plain http is not allowed (RFC 8460 §3)');
});

t.test('a day of sessions makes a report the schema accepts, with successes, failures and their details', async (t) => {
  const day: DayCounts = { policies: {} };
  const sts = { mode: 'enforce', mx: ['mx.example.com', '*.backup.example.com'], maxAgeSeconds: 86400 };
  for (let i = 0; i < 3; i++) countSession(day, sessionOf({ result: 'success', route: { mx: 'mx.example.com', remoteIp: '192.0.2.1', sourceIp: '198.51.100.7' }, sts }));
  countSession(day, sessionOf({ result: 'failure', failure: 'certificate-expired', route: { mx: 'mx.example.com', remoteIp: '192.0.2.1', sourceIp: '198.51.100.7' }, sts }));
  const tlsa = [{ usage: 3, selector: 1, matchingType: 1, data: Buffer.alloc(32, 0xab) }];
  const other: DayCounts = { policies: {} };
  countSession(other, sessionOf({ result: 'failure', failure: 'tlsa-invalid', route: { mx: 'mx2.example.com', remoteIp: '192.0.2.2' }, tlsa }));
  countSession(other, sessionOf({ result: 'failure', failure: 'certificate-expired', route: { mx: 'mx.example.com', remoteIp: '192.0.2.1', sourceIp: '198.51.100.7' }, sts }));
  const report = buildReport({ organization: 'tern.test', contact: 'mailto:postmaster@tern.test', reportId: 'r-1', date: '2026-12-05', domain: 'example.com' }, mergeDays([day, other]));
  t.ok(validate(report), JSON.stringify(validate.errors));
  t.match(report, {
    'date-range': { 'start-datetime': '2026-12-05T00:00:00Z', 'end-datetime': '2026-12-05T23:59:59Z' },
    policies: [
      {
        policy: { 'policy-type': 'sts', 'policy-string': ['version: STSv1', 'mode: enforce', 'mx: mx.example.com', 'mx: *.backup.example.com', 'max_age: 86400'], 'policy-domain': 'example.com', 'mx-host': ['mx.example.com', '*.backup.example.com'] },
        summary: { 'total-successful-session-count': 3, 'total-failure-session-count': 2 },
        'failure-details': [{ 'result-type': 'certificate-expired', 'sending-mta-ip': '198.51.100.7', 'receiving-mx-hostname': 'mx.example.com', 'receiving-ip': '192.0.2.1', 'failed-session-count': 2 }],
      },
      { policy: { 'policy-type': 'tlsa', 'policy-string': [`3 1 1 ${'ab'.repeat(32)}`] }, summary: { 'total-successful-session-count': 0, 'total-failure-session-count': 1 }, 'failure-details': [{ 'result-type': 'tlsa-invalid' }] },
    ],
  });
  t.notOk(validate({ ...report, policies: [{ policy: { 'policy-type': 'dkim', 'policy-domain': 'x' }, summary: {} }] }), 'the schema can fail');
});

t.test('the report mail: multipart/report, report-type tlsrpt, the gzip attached as RFC 8460 §5.3 names it', async (t) => {
  const report = { hello: 'world' };
  const mail = reportMail({ organization: 'tern.test', contact: 'c', reportId: 'r-2', date: '2026-12-05', domain: 'example.com' }, 'tlsrpt@tern.test', 'rua@example.com', gzipSync(JSON.stringify(report)), 'r-2@tern.test', new Date('2026-12-06T00:10:00Z'));
  t.match(mail, /^Subject: Report Domain: example\.com Submitter: tern\.test Report-ID: <r-2>\r$/m);
  t.match(mail, /^TLS-Report-Domain: example\.com\r$/m);
  t.match(mail, /^Content-Type: multipart\/report; report-type="tlsrpt"; boundary="tlsrpt-r-2"\r$/m);
  t.match(mail, /^Content-Type: application\/tlsrpt\+gzip; name="tern\.test!example\.com!1796428800!1796515199!r-2\.json\.gz"\r$/m);
  const body = /Content-Transfer-Encoding: base64\r\nContent-Disposition: [^\r]+\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n\r\n--/.exec(mail)?.[1] ?? '';
  t.same(JSON.parse(gunzipSync(Buffer.from(body.replace(/\r\n/g, ''), 'base64')).toString()), report, 'the attachment is the report');
  t.ok(mail.split('\r\n').every((l) => l.length <= 998), 'every line within SMTP\'s limit');
});
