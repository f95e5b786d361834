import t from 'tap';
import { tempDir, testConfig, startTern } from '../support/daemon.ts';
import { childConfig, spawnTern } from '../support/child.ts';
import { message, sendMail, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
const dirs: { remove(): void }[] = [];

t.before(async () => {
  world = await startWorld({
    ...(await import('../support/world.ts')).STANDARD_ZONE,
    'moving.test': { mx: [{ exchange: 'mx.moving.test', priority: 10 }] },
    'mx.moving.test': { a: ['127.0.0.9'] },
  });
});
t.teardown(async () => {
  await world.close();
  for (const d of dirs) d.remove();
});

const receivedBy = (rcpt: string) => {
  const found = world.sinks.get('127.0.0.2')!.received.filter((m) => m.rcptTo.includes(rcpt));
  return found.length > 0 && found;
};

t.test('a restart resumes the queue from the spool', async (t) => {
  const spool = tempDir();
  dirs.push(spool);
  const config = testConfig({ dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path, delivery: { retry: { base: '1s' } } });
  const first = await startTern(config);
  await sendMail(first.smtpPort, 'a@campaign.test', ['ivy@moving.test'], message());
  await until(() => first.outcomes('ivy@moving.test').length > 0, 5_000);
  t.match(first.outcomes('ivy@moving.test')[0], { event: 'retry', reply: /^451 4\.4\.1 connection failed/ });
  await first.stop();

  world.dns.set('mx.moving.test', { a: ['127.0.0.2'] });
  const second = await startTern(config);
  t.teardown(() => second.stop());
  await until(() => receivedBy('ivy@moving.test'), 10_000, 'delivery after restart');
  // The sink has the message a moment before Tern reads its reply and logs the outcome.
  const delivered = await until(() => second.outcomes('ivy@moving.test').find((l) => l.event === 'delivered'), 5_000, 'the delivered log line');
  t.match(delivered, { event: 'delivered', attempt: 2 }, 'the attempt count survived the restart');
});

t.test('SIGTERM stops accepting, finishes in-flight work and exits 0', async (t) => {
  const spool = tempDir();
  dirs.push(spool);
  const { configPath, smtpPort } = await childConfig(spool.path, world);
  const tern = await spawnTern(configPath);
  t.match(await sendMail(smtpPort, 'a@campaign.test', ['jack@a.test'], message()), /^250 /);
  tern.proc.kill('SIGTERM');
  t.equal(await tern.exited, 0, 'exit code 0');
  t.ok(tern.lines.some((l) => l.msg === 'stopped'));
  await until(() => receivedBy('jack@a.test'), 5_000, 'the accepted message delivered before exit or after restart');
});

t.test('kill -9 during a stream of 2,000 messages loses no acknowledged message', async (t) => {
  const spool = tempDir();
  dirs.push(spool);
  const { configPath, smtpPort } = await childConfig(spool.path, world);
  const total = 2_000;
  const sessions = 10;
  const acked = new Set<number>();
  let next = 0;
  let tern = await spawnTern(configPath);
  let killed = false;

  const sender = async (): Promise<void> => {
    while (next < total) {
      const seq = next++;
      if (seq === Math.floor(total / 3) && !killed) {
        killed = true;
        tern.proc.kill('SIGKILL');
      }
      const reply = await sendMail(smtpPort, 'a@campaign.test', [`k${seq}@a.test`], message({ headers: [`X-Seq: ${seq}`] })).catch((e: Error) => `error ${e.message}`);
      if (reply.startsWith('250 ')) acked.add(seq);
    }
  };
  await Promise.all(Array.from({ length: sessions }, sender));
  t.equal(await tern.exited, 'SIGKILL');
  tern = await spawnTern(configPath);
  t.teardown(async () => {
    tern.proc.kill('SIGTERM');
    await tern.exited;
  });

  // After the restart, send what was refused while the daemon was down, as a campaign tool would.
  const refused = Array.from({ length: total }, (_, seq) => seq).filter((seq) => !acked.has(seq));
  const resend = async (): Promise<void> => {
    for (let seq = refused.shift(); seq !== undefined; seq = refused.shift()) {
      const reply = await sendMail(smtpPort, 'a@campaign.test', [`k${seq}@a.test`], message({ headers: [`X-Seq: ${seq}`] }));
      if (reply.startsWith('250 ')) acked.add(seq);
    }
  };
  await Promise.all(Array.from({ length: sessions }, resend));
  const seen = () => world.sinks.get('127.0.0.2')!.received.flatMap((m) => {
    const match = /\r\nX-Seq: (\d+)\r\n/.exec(m.data.toString());
    return match ? [Number(match[1])] : [];
  });
  await until(() => [...acked].every((s) => seen().includes(s)) || undefined, 60_000, 'every acknowledged message at the sink');
  const counts = new Map<number, number>();
  for (const s of seen()) counts.set(s, (counts.get(s) ?? 0) + 1);
  const duplicates = [...counts.values()].reduce((sum, c) => sum + c - 1, 0);
  t.equal(acked.size, total, 'every message was acknowledged once the daemon was back');
  t.ok([...acked].every((s) => counts.has(s)), 'every 250-acknowledged message reached the sink');
  t.comment(`kill -9 at message ${Math.floor(total / 3)}: ${seen().length} deliveries for ${acked.size} messages, ${duplicates} duplicates`);
  t.ok(duplicates <= sessions * 10, `duplicates are bounded (${duplicates})`);
});
