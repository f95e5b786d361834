import t from 'tap';
import { adminFetch, startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { ShiftedClock } from '../support/shifted-clock.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * IP warm-up (docs/egress.md) in the real daemon, days compressed by a clock the test jumps: a
 * warming source sends its day's cap and no more, the rest of its pool takes the overflow, mail
 * with nowhere to go waits and goes the next day, an operator pauses and moves the ramp, and a
 * restart keeps where it stands.
 */
const DAY = 86_400_000;
let world: World;
let tern: RunningTern;
const spool = tempDir();
let clock = new ShiftedClock();
const today = new Date(clock.now()).toISOString().slice(0, 10);

const config = () => testConfig({
  dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
  tuning: { threads: 1 }, // the shards' clocks are not the test's
  shaping: { default_rules: false }, // Tern's adaptive rules would slow ip2 when it is throttled; this is about its ramp
  egress: {
    sources: [
      { name: 'ip1', address: '127.0.0.10', ehlo: 'mta1.tern.test' },
      { name: 'ip2', address: '127.0.0.11', ehlo: 'mta2.tern.test', warmup: { start: today, schedule: [3, 6], providers: {} } },
    ],
    pools: [
      { name: 'solo', sources: ['ip2'] },
      { name: 'mixed', sources: [{ source: 'ip2', weight: 1000 }, 'ip1'] },
    ],
    default_pool: 'mixed',
    timezone: 'UTC',
  },
});

t.before(async () => {
  world = await startWorld();
  tern = await startTern(config(), clock);
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
});

const sink = () => world.sinks.get('127.0.0.2')!;
const from = (peer: string, prefix: string) => sink().received.filter((m) => m.peer === peer && m.rcptTo.some((r) => r.startsWith(prefix))).length;
const send = (pool: string, to: string) => sendMail(tern.smtpPort, 'news@campaign.test', [to], message({ to, headers: [`X-Tern-Meta: {"pool":"${pool}"}`] }));
const egress = async (): Promise<{ sources: { name: string; warmup: Record<string, unknown> | null }[] }> => (await adminFetch(tern.adminPort, '/api/v1/egress')).json() as never;
const ip2 = async () => (await egress()).sources.find((s) => s.name === 'ip2')?.warmup;
const post = (body: unknown) => adminFetch(tern.adminPort, '/api/v1/egress/warmup', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
/**
 * Days are jumped only between attempts: an attempt in flight across a jump of a day looks stuck
 * to the queue's watchdog (which would start it again), as it would after a day of real time.
 */
const idle = () => until(async () => /^tern_queue_messages\{state="active"\} 0$/m.test(await (await adminFetch(tern.adminPort, '/metrics')).text()), 10_000, 'no attempt in flight');
const nextMidnight = (): number => Date.parse(`${new Date(clock.now() + DAY).toISOString().slice(0, 10)}T00:00:00Z`) - clock.now() + 1_000;

t.test('day 0: the cap is sent and no more; the pool\'s other source takes the overflow; the rest waits', async (t) => {
  for (let i = 0; i < 5; i++) t.match(await send('solo', `solo${i}@a.test`), /^250 /);
  await until(() => from('127.0.0.11', 'solo') === 3, 10_000, 'three sent from ip2');
  await until(async () => /tern_deferrals_total\{provider="other",reason="warmup"\} [2-9]/.test(await (await adminFetch(tern.adminPort, '/metrics')).text()), 10_000, 'two held for the warm-up');
  t.equal(from('127.0.0.11', 'solo'), 3, 'ip2 sent its cap of 3');
  t.match(await ip2(), { day: 0, cap: 3, sent: 3, remaining: 0, warm: false });

  for (let i = 0; i < 4; i++) await send('mixed', `mixed${i}@a.test`);
  await until(() => from('127.0.0.10', 'mixed') === 4, 10_000, 'the overflow sent from ip1');
  t.equal(from('127.0.0.11', 'mixed'), 0, 'none from the capped ip2, whatever its weight');
  t.equal(from('127.0.0.11', 'solo') + from('127.0.0.10', 'solo'), 3, 'the solo pool has no other source: its two wait');
});

t.test('the next day: the ramp climbs, and what waited goes', async (t) => {
  await idle();
  clock.jump(nextMidnight());
  await until(() => from('127.0.0.11', 'solo') === 5, 10_000, 'the two held sent the next day');
  t.match(await ip2(), { day: 1, cap: 6, sent: 2, remaining: 4 });
  const metrics = await (await adminFetch(tern.adminPort, '/metrics')).text();
  t.match(metrics, /^tern_egress_warmup_day\{source="ip2"\} 1$/m);
  t.match(metrics, /^tern_egress_warmup_remaining\{source="ip2",scope="total"\} 4$/m);
});

t.test('an operator pauses the ramp, resumes and moves it; every call audited; a restart keeps it', async (t) => {
  t.equal((await post({ source: 'ip2', action: 'pause' })).status, 200);
  await idle();
  clock.jump(nextMidnight());
  t.match(await ip2(), { day: 1, paused: true }, 'no step while paused');
  t.equal((await post({ source: 'ip2', action: 'resume' })).status, 200);
  t.equal((await post({ source: 'ip2', action: 'skip', days: 5 })).status, 200);
  t.match(await ip2(), { day: 6, warm: true, paused: false });
  t.equal((await post({ source: 'ip9', action: 'pause' })).status, 404, 'not a warming source');
  const bad = await post({ source: 'ip2', action: 'skip' });
  t.equal(bad.status, 400);
  t.match(await bad.json(), { problems: [{ path: 'days', problem: /"days" goes with "skip"/ }] });

  await tern.stop();
  clock = clock.fork();
  tern = await startTern(config(), clock);
  t.match(await ip2(), { day: 6, warm: true }, 'after a restart');
});

t.test('a day of throttles holds the ramp where it is, and the next clean day it climbs', async (t) => {
  // Back to a step with no cap in the way (the schedule's last is 6; day 6 is past it).
  t.match(await ip2(), { day: 6 });
  sink().patience.throttlePeers = ['127.0.0.11'];
  for (let i = 0; i < 25; i++) await send('solo', `bad${i}@a.test`);
  await until(async () => /tern_deferrals_total\{provider="other",reason="badreputation"\} (2[5-9]|[3-9]\d|\d{3,})/.test(await (await adminFetch(tern.adminPort, '/metrics')).text()), 10_000, 'the receiver throttling ip2');
  sink().patience.throttlePeers = undefined;
  await until(() => from('127.0.0.11', 'bad') === 25, 15_000, 'the throttled mail delivered once the receiver relents');
  await idle();
  clock.jump(nextMidnight());
  const held = await ip2();
  t.match(held, { day: 6, held: /\d+% of the replies on \d{4}-\d{2}-\d{2} were throttles or blocks \(over 5%\)/ }, 'the ramp held, and says why');
  t.ok(tern.logs.some((l) => String(l.msg).startsWith('warm-up: ip2 holds at day 6')), 'logged');
  clock.jump(nextMidnight());
  t.match(await ip2(), { day: 7, held: null }, 'a clean day: it climbs again');
});
