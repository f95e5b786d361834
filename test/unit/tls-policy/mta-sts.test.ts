import t from 'tap';
import { mxMatches, parseStsPolicy, parseStsRecord, STS_LIMITS } from '../../../src/tls-policy/mta-sts.ts';

/** RFC 8461's own example policy (§3.2), with CRLF line ends as served. */
const EXAMPLE = 'version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com\r\nmax_age: 604800\r\n';

t.test('the TXT record: one v=STSv1 record with an id, or a reason there is none', async (t) => {
  t.same(parseStsRecord(['v=STSv1; id=20160831085700Z;']), { ok: true, value: { id: '20160831085700Z' } }, 'RFC 8461 §3.1 example');
  t.same(parseStsRecord(['v=spf1 -all', 'v=STSv1; id=x1']), { ok: true, value: { id: 'x1' } }, 'other records are ignored');
  t.match(parseStsRecord(['v=spf1 -all']), { ok: false, error: 'no v=STSv1 record' });
  t.match(parseStsRecord(['v=STSv1; id=a', 'v=STSv1; id=b']), { ok: false, error: /2 v=STSv1 records/ });
  t.match(parseStsRecord(['v=STSv1;']), { ok: false, error: 'no id= field' });
  t.match(parseStsRecord(['v=STSv1; id=has-dash']), { ok: false, error: /not 1-32 letters and digits/ });
  t.match(parseStsRecord([`v=STSv1; id=${'a'.repeat(33)}`]), { ok: false });
  t.match(parseStsRecord(['v=STSv10; id=a']), { ok: false, error: 'no v=STSv1 record' }, 'a later version is not this one');
  t.match(parseStsRecord(['v=STSv1; junk']), { ok: false, error: /malformed field/ });
});

t.test('the policy file: RFC 8461\'s example, and each way it can be wrong', async (t) => {
  t.same(parseStsPolicy(EXAMPLE), { ok: true, value: { mode: 'enforce', mx: ['mail.example.com', '*.example.net', 'backupmx.example.com'], maxAgeSeconds: 604800 } });
  t.match(parseStsPolicy(EXAMPLE.replaceAll('\r\n', '\n')), { ok: true }, 'LF line ends too');
  t.match(parseStsPolicy('version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 86400\nextension: ignored\n'), { ok: true, value: { mode: 'testing', mx: ['mx.example.com'] } }, 'case and trailing dot normalised; unknown keys ignored');
  t.match(parseStsPolicy('version: STSv1\nmode: none\nmax_age: 86400\n'), { ok: true, value: { mode: 'none', mx: [] } }, 'none needs no mx');
  t.match(parseStsPolicy('version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 99999999999\n'), { ok: false, error: /max_age/ }, 'over ten digits');
  t.match(parseStsPolicy('version: STSv1\nmode: enforce\nmx: a.example.com\nmax_age: 999999999\n'), { ok: true, value: { maxAgeSeconds: STS_LIMITS.maxAgeSeconds } }, 'capped at a year');
  t.match(parseStsPolicy(EXAMPLE.replace('STSv1', 'STSv2')), { ok: false, error: /version "STSv2"/ });
  t.match(parseStsPolicy(EXAMPLE.replace('enforce', 'strict')), { ok: false, error: /mode "strict"/ });
  t.match(parseStsPolicy('version: STSv1\nmode: enforce\nmax_age: 10\n'), { ok: false, error: 'mode enforce without any mx' });
  t.match(parseStsPolicy(EXAMPLE.replace('max_age: 604800', 'max_age: -1')), { ok: false, error: /max_age "-1"/ });
  t.match(parseStsPolicy(`${EXAMPLE}mx: not a host\n`), { ok: false, error: /mx "not a host"/ });
  t.match(parseStsPolicy(`${EXAMPLE}mx: *.*.example.com\n`), { ok: false }, 'one wildcard, leftmost only');
  t.match(parseStsPolicy('<html>404 Not Found</html>'), { ok: false, error: /malformed line/ }, 'an error page is no policy');
  t.match(parseStsPolicy(EXAMPLE + `x: ${'a'.repeat(STS_LIMITS.maxPolicyBytes)}\n`), { ok: false, error: /over 65536 bytes/ });
});

t.test('MX matching: exact names, and a wildcard for exactly one leftmost label', async (t) => {
  const policy = { mx: ['mail.example.com', '*.example.net'] };
  t.ok(mxMatches(policy.mx, 'mail.example.com'));
  t.ok(mxMatches(policy.mx, 'MAIL.example.com.'), 'case and a trailing dot do not matter');
  t.ok(mxMatches(policy.mx, 'mx1.example.net'));
  t.notOk(mxMatches(policy.mx, 'example.net'), 'the wildcard needs a label');
  t.notOk(mxMatches(policy.mx, 'a.b.example.net'), 'and only one (RFC 8461 §4.1)');
  t.notOk(mxMatches(policy.mx, 'evil-example.net'));
  t.notOk(mxMatches(policy.mx, 'other.example.com'));
});
