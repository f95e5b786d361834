import t from 'tap';
import { planFor, reported, withDane } from '../../../src/delivery/receiver-policy.ts';
import type { DeliveryJob } from '../../../src/delivery/index.ts';
import type { AttemptOutcome } from '../../../src/model/outcome.ts';
import type { TlsPolicyDecision } from '../../../src/model/tls-policy.ts';
import { siteNameOf } from '../../../src/model/ids.ts';
import { Readable } from 'node:stream';

const job = (hosts: DeliveryJob['hosts']): DeliveryJob => ({
  site: siteNameOf(hosts.map((h) => h.name)), domain: 'example.test', hosts,
  envelope: { sender: 'a@b.test', recipients: ['r@example.test'], size: 1, eightBit: false }, openBody: () => Readable.from([]),
});
const enforce: TlsPolicyDecision = { kind: 'mta-sts', mode: 'enforce', id: '7', mx: ['mx1.example.test', '*.backup.test'] };
const host = (name: string, extra: object = {}) => ({ name, addresses: ['127.0.0.9'], ...extra });

t.test('MTA-STS enforce keeps the hosts the policy names, at verify; none named is a deferral', async (t) => {
  t.match(planFor(job([host('mx1.example.test'), host('evil.test'), host('a.backup.test')]), enforce), { kind: 'send', level: 'verify', hosts: [{ name: 'mx1.example.test' }, { name: 'a.backup.test' }] });
  t.match(planFor(job([host('evil.test')]), enforce), { kind: 'refuse', outcome: { kind: 'site-unreachable', reply: { code: 451, enhanced: '4.7.5' }, route: { tlsPolicy: { type: 'mta-sts', failure: 'validation-failure' } } } });
  t.match(planFor(job([host('evil.test')]), { ...enforce, mode: 'testing' }), { kind: 'send', hosts: [{ name: 'evil.test' }] }, 'testing sends as usual');
});

t.test('DANE takes precedence: a host with TLSA records stays whatever the MTA-STS list says', async (t) => {
  const plan = planFor(job([host('dane.test', { dane: [] }), host('evil.test')]), enforce);
  t.match(plan, { kind: 'send', hosts: [{ name: 'dane.test' }] });
  const outcome: AttemptOutcome = { kind: 'transaction', route: { mx: 'dane.test', tlsPolicy: { type: 'dane', result: 'success' } }, replies: [] } as unknown as AttemptOutcome;
  t.same(reported(outcome, enforce, 'example.test').route.tlsPolicy, { type: 'dane', result: 'success' }, 'and reports DANE, not MTA-STS');
});

t.test('TLSA lookups: only hosts DNSSEC vouches for; failed lookups drop the host; all failed is a deferral', async (t) => {
  const asked: string[] = [];
  const lookup = async (name: string) => {
    asked.push(name);
    return name === 'broken.test' ? { kind: 'failed' as const, detail: 'SERVFAIL' } : { kind: 'dane' as const, records: [] };
  };
  const out = await withDane([host('signed.test', { secure: true }), host('broken.test', { secure: true }), host('plain.test')], lookup);
  t.same(asked.sort(), ['broken.test', 'signed.test'], 'the unsigned host is not asked');
  t.match(out, { hosts: [{ name: 'signed.test', dane: [] }, { name: 'plain.test' }] });
  t.match(await withDane([host('broken.test', { secure: true })], lookup), { refused: { reply: { enhanced: '4.7.5', text: /broken\.test: SERVFAIL/ }, route: { tlsPolicy: { failure: 'dnssec-invalid' } } } });
});
