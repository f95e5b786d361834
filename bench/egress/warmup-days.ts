/**
 * A multi-day IP warm-up, compressed (issue 19): the real daemon with a clock moved a day at a
 * time, a loopback receiver that records which address each message came from, and one day on
 * which it distrusts the warming address. Prints, per day: the warming source's step and cap,
 * what it sent, what overflowed to the warm source, what waited, and the throttles seen.
 * Usage: npm run demo:warmup   (about half a minute)
 */
import { adminFetch, startTern, tempDir, testConfig } from '../../test/support/daemon.ts';
import { message, sendMail, until } from '../../test/support/smtp-client.ts';
import { ShiftedClock } from '../../test/support/shifted-clock.ts';
import { startWorld } from '../../test/support/world.ts';

const DAYS = 7;
const PER_DAY = 60;
const THROTTLED_DAY = 3;
const clock = new ShiftedClock();
const today = new Date(clock.now()).toISOString().slice(0, 10);
const world = await startWorld();
const spool = tempDir('tern-warmup-demo-');
const tern = await startTern(testConfig({
  dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
  tuning: { threads: 1 },
  shaping: { default_rules: false },
  delivery: { retry: { base: '20m', max: '1h', jitter: 0 } },
  egress: {
    sources: [
      { name: 'ip1', address: '127.0.0.10', ehlo: 'mta1.tern.test' },
      { name: 'ip2', address: '127.0.0.11', ehlo: 'mta2.tern.test', warmup: { start: today, schedule: [5, 10, 20, 40, 80], providers: {} } },
    ],
    pools: [
      { name: 'marketing', sources: [{ source: 'ip2', weight: 1000 }, 'ip1'] },
      { name: 'new-ip-only', sources: ['ip2'] },
    ],
    timezone: 'UTC',
  },
}), clock);
const sink = world.sinks.get('127.0.0.2');
if (!sink) throw new Error('no sink');
const DAY = 86_400_000;
const nextMidnight = (): number => Date.parse(`${new Date(clock.now() + DAY).toISOString().slice(0, 10)}T00:00:00Z`) - clock.now() + 1_000;
const ip2 = async (): Promise<Record<string, unknown>> => {
  const view = (await (await adminFetch(tern.adminPort, '/api/v1/egress')).json()) as { sources: { name: string; warmup: Record<string, unknown> }[] };
  return view.sources.find((s) => s.name === 'ip2')?.warmup ?? {};
};
const metric = async (series: string): Promise<number> => {
  const line = (await (await adminFetch(tern.adminPort, '/metrics')).text()).split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
};

const rows: string[] = [];
try {
  for (let d = 0; d < DAYS; d++) {
    const before = { ip1: sink.received.filter((m) => m.peer === '127.0.0.10').length, ip2: sink.received.filter((m) => m.peer === '127.0.0.11').length };
    const heldBefore = await metric('tern_deferrals_total{provider="other",reason="warmup"}');
    const throttledBefore = await metric('tern_deferrals_total{provider="other",reason="badreputation"}');
    const start = await ip2();
    sink.patience.throttlePeers = d === THROTTLED_DAY ? ['127.0.0.11'] : undefined;
    // Most of the day's mail may go from either address; a tenth only from the new one.
    for (let i = 0; i < PER_DAY; i++) {
      const pool = i % 10 === 0 ? 'new-ip-only' : 'marketing';
      await sendMail(tern.smtpPort, 'news@campaign.test', [`d${d}m${i}@a.test`], message({ headers: [`X-Tern-Meta: {"pool":"${pool}"}`] }));
    }
    await until(async () => (await metric('tern_queue_messages{state="active"}')) === 0, 20_000, 'the day\'s attempts made');
    const end = await ip2();
    const sent = { ip1: sink.received.filter((m) => m.peer === '127.0.0.10').length - before.ip1, ip2: sink.received.filter((m) => m.peer === '127.0.0.11').length - before.ip2 };
    const held = (await metric('tern_deferrals_total{provider="other",reason="warmup"}')) - heldBefore;
    const throttled = (await metric('tern_deferrals_total{provider="other",reason="badreputation"}')) - throttledBefore;
    const waiting = await metric('tern_queue_recipients');
    rows.push(`| ${d} | ${String(end.date)} | ${String(start.day)} | ${String(start.cap ?? 'none')} | ${String(end.sent)} | ${sent.ip2} | ${sent.ip1} | ${held} | ${throttled} | ${waiting} | ${start.held ? `ramp held: ${String(start.held)}` : ''} |`);
    sink.patience.throttlePeers = undefined;
    clock.jump(nextMidnight());
  }
  const last = await ip2();
  process.stdout.write(`IP warm-up over ${DAYS} days (ip2 schedule 5, 10, 20, 40, 80; ${PER_DAY} messages a day, a tenth for pool new-ip-only; the receiver throttles ip2 on day ${THROTTLED_DAY})\n\n`);
  process.stdout.write('| day | date | ip2 step | ip2 cap | ip2 counted | delivered from ip2 | from ip1 (overflow) | held for warm-up | throttled | still waiting | note |\n|---|---|---|---|---|---|---|---|---|---|---|\n');
  process.stdout.write(`${rows.join('\n')}\n\nafter day ${DAYS - 1}: ip2 is on step ${String(last.day)}${last.held ? ` (${String(last.held)})` : ''}\n`);
} finally {
  await tern.stop();
  await world.close();
  spool.remove();
}
