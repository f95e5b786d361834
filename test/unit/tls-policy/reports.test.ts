import { readdirSync } from 'node:fs';
import { pino } from 'pino';
import t from 'tap';
import { openTlsReports, type ReportSender } from '../../../src/tls-policy/reports.ts';
import { sessionOf } from '../../../src/tls-policy/tlsrpt.ts';
import { gunzipSync } from 'node:zlib';
import { tempDir } from '../../support/daemon.ts';
import { FakeClock } from '../../support/fake-clock.ts';

t.test('each shard counts; the sending shard merges every shard\'s day, reports the domains that ask, and clears the day', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const clock = new FakeClock(Date.parse('2026-12-05T12:00:00Z'));
  const sent: { to: string; report: any }[] = [];
  const send: ReportSender = {
    https: async (url, gz) => {
      sent.push({ to: url, report: JSON.parse(gunzipSync(gz).toString()) });
      return 200;
    },
    mail: async (_from, to) => {
      sent.push({ to: `mailto:${to}`, report: undefined });
    },
  };
  const txt = async (name: string) => (name === '_smtp._tls.asks.test' ? ['v=TLSRPTv1; rua=https://r.test/x,mailto:rua@r.test'] : undefined);
  const open = (shard: number) => openTlsReports({ dir: dir.path, shard, sends: shard === 0, organization: 'o', contact: 'c', from: 'f@o', node: 'n1' }, { txt, send, clock, log: pino({ level: 'silent' }) });
  const [zero, one] = [open(0), open(1)];
  await zero.start();
  await one.start();
  const ok = sessionOf({ result: 'success', route: { mx: 'mx.asks.test' }, tlsa: [] });
  zero.record('asks.test', ok);
  one.record('asks.test', ok);
  one.record('asks.test', sessionOf({ result: 'failure', failure: 'tlsa-invalid', route: { mx: 'mx.asks.test' }, tlsa: [] }));
  zero.record('silent.test', ok);
  await one.stop();
  t.equal(await zero.reportDue(), 0, 'today is not over: nothing reported');
  // The hourly check finds the finished day (a call meanwhile waits for it, and finds nothing left).
  await clock.advance(Date.parse('2026-12-06T00:10:00Z') - clock.now());
  t.equal(await zero.reportDue(), 0);
  t.same(sent.map((s) => s.to), ['https://r.test/x', 'mailto:rua@r.test']);
  t.match(sent[0]?.report, { 'date-range': { 'start-datetime': '2026-12-05T00:00:00Z' }, policies: [{ summary: { 'total-successful-session-count': 2, 'total-failure-session-count': 1 } }] }, 'both shards counted');
  t.same(readdirSync(dir.path).filter((n) => n.startsWith('2026-12-05')), [], 'the day is cleared, every shard\'s file');
  t.equal(await zero.reportDue(), 0, 'and not reported twice');
  await zero.stop();
});

t.test('an address that cannot be reached is tried again at the next checks, the others not; after two days the day is given up', async (t) => {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const clock = new FakeClock(Date.parse('2026-12-05T12:00:00Z'));
  const tries: string[] = [];
  let httpsUp = false;
  const send: ReportSender = {
    https: async (url) => {
      tries.push(url);
      return httpsUp ? 202 : 503;
    },
    mail: async (_from, to) => {
      tries.push(`mailto:${to}`);
    },
  };
  const txt = async (name: string) => (name === '_smtp._tls.asks.test' ? ['v=TLSRPTv1; rua=https://r.test/x,mailto:rua@r.test'] : undefined);
  const reports = openTlsReports({ dir: dir.path, shard: 0, sends: true, organization: 'o', contact: 'c', from: 'f@o', node: 'n1' }, { txt, send, clock, log: pino({ level: 'silent' }) });
  reports.record('asks.test', sessionOf({ result: 'success', route: {}, tlsa: [] }));
  await clock.advance(Date.parse('2026-12-06T00:10:00Z') - clock.now());
  await reports.reportDue();
  t.same(tries, ['https://r.test/x', 'mailto:rua@r.test'], 'the first check: the https address answers 503');
  t.ok(readdirSync(dir.path).some((n) => n.startsWith('2026-12-05')), 'the day is kept');
  httpsUp = true;
  await reports.reportDue();
  t.same(tries.slice(2), ['https://r.test/x'], 'the next check: only the address not yet reached');
  t.same(readdirSync(dir.path).filter((n) => n.startsWith('2026-12-05')), [], 'now the day goes');

  httpsUp = false;
  reports.record('asks.test', sessionOf({ result: 'success', route: {}, tlsa: [] }));
  await clock.advance(3 * 86_400_000);
  await reports.reportDue();
  t.same(readdirSync(dir.path).filter((n) => n.startsWith('2026-12-06')), [], 'a day more than two days old is given up after one more try');
  await reports.stop();
});
