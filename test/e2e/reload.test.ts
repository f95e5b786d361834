import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { childConfig, spawnTern, type TernProcess } from '../support/child.ts';
import { adminFetch, tempDir } from '../support/daemon.ts';
import { message, RawSmtp, sendMail, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

/**
 * SIGHUP as an operator sends it, to the real `tern start`: new MX rules take effect, a broken
 * rules file changes nothing and kills nothing, and the connection open to a receiver before
 * the signal carries the mail after it (a reload drops no connection).
 */
let world: World;
let tern: TernProcess | undefined;
const dir = tempDir();
const rulesFile = join(dir.path, 'shaping.yaml');

t.teardown(async () => {
  if (tern && tern.proc.exitCode === null) {
    tern.proc.kill('SIGKILL');
    await tern.exited;
  }
  await world?.close();
  dir.remove();
});

t.test('SIGHUP: new rules apply, a broken file is refused, and the open connection stays open', async (t) => {
  world = await startWorld();
  const sink = world.sinks.get('127.0.0.2')!;
  writeFileSync(rulesFile, 'sites:\n  - { site: mx1.a.test, max_connections: 1 }\n');
  const { configPath, smtpPort, adminPort } = await childConfig(dir.path, world, {
    shaping: { rules_file: rulesFile },
    delivery: { timeouts: { connect: '2s', greeting: '2s', command: '3s', data: '5s', idle: '60s' } },
  });
  tern = await spawnTern(configPath);
  const running = tern;
  const site = async (): Promise<{ limits: Record<string, { value: unknown; rule: string }> }> => {
    const body = (await (await adminFetch(adminPort, '/api/v1/sites/mx1.a.test')).json()) as { paths: { limits: Record<string, { value: unknown; rule: string }> }[] };
    return body.paths[0]!;
  };
  const deliver = async (to: string): Promise<void> => {
    t.match(await sendMail(smtpPort, 'news@campaign.test', [to], message({ to })), /^250 /, `${to} accepted`);
    await until(() => sink.received.some((m) => m.rcptTo.includes(to)), 15_000, `${to} delivered`);
  };
  const logged = (msg: string, from: number): Promise<unknown> => until(() => running.lines.slice(from).find((l) => l.msg === msg), 10_000, msg);

  await deliver('before@a.test');
  t.equal(sink.connections, 1, 'one connection to the receiver');
  t.match((await site()).limits.max_connections, { value: 1, rule: 'site:mx1.a.test' });

  let from = running.lines.length;
  writeFileSync(rulesFile, 'sites:\n  - { site: mx1.a.test, max_connections: 1, max_messages_per_connection: 7 }\n');
  running.proc.kill('SIGHUP');
  await logged('reload requested', from);
  await until(async () => (await site()).limits.max_messages_per_connection?.rule === 'site:mx1.a.test', 10_000, 'the new rule in force');
  t.match((await site()).limits.max_messages_per_connection, { value: 7, rule: 'site:mx1.a.test' });
  await deliver('after@a.test');
  t.equal(sink.connections, 1, 'the same connection carried the mail after the reload');

  from = running.lines.length;
  writeFileSync(rulesFile, 'adaptive:\n  - { id: bad, match: "(", action: { pause: true }, duration: 1h }\n');
  running.proc.kill('SIGHUP');
  const refused = await logged('reload: MX rules not replaced; the previous rules stay in use', from) as { problems: string[] };
  t.match(refused.problems, [/shaping\.rules_file: adaptive\[0\]\.match: invalid regular expression/], 'the log names the key and the problem');
  t.equal(running.proc.exitCode, null, 'still running');
  t.match((await site()).limits.max_messages_per_connection, { value: 7, rule: 'site:mx1.a.test' }, 'the rules in force stay');
  await deliver('broken@a.test');
  t.equal(sink.connections, 1, 'and the connection with them');

  running.proc.kill('SIGTERM');
  t.equal(await running.exited, 0, 'a clean stop');
});

t.test('SIGHUP reads the whole config again: live keys apply, the rest is named as needing a restart, an invalid file changes nothing', async (t) => {
  world ??= await startWorld();
  const sink = world.sinks.get('127.0.0.2')!;
  const sub = tempDir();
  t.teardown(() => sub.remove());
  const extra = { delivery: { timeouts: { connect: '2s', greeting: '2s', command: '3s', data: '5s', idle: '60s' } } };
  const { configPath, smtpPort, adminPort } = await childConfig(sub.path, world, extra);
  const child = await spawnTern(configPath);
  t.teardown(async () => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await child.exited;
  });
  const logged = (test: (l: Record<string, unknown>) => boolean, from: number, what: string) => until(() => child.lines.slice(from).find(test), 10_000, what);
  const { readFileSync } = await import('node:fs');
  const { parse, stringify } = await import('yaml');
  const original = parse(readFileSync(configPath, 'utf8')) as Record<string, any>;

  const next = structuredClone(original);
  next.log.level = 'warn';
  next.admin.token = 'rotated-token';
  next.shaping = { ...(next.shaping ?? {}), defaults: { max_connections: 3 } };
  next.smtp.max_recipients = 5;
  writeFileSync(configPath, stringify(next));
  let from = child.lines.length;
  child.proc.kill('SIGHUP');
  const restart = await logged((l) => l.msg === 'reload: these changes need a restart; the running values stay in force', from, 'the restart warning') as { keys: string[] };
  t.same(restart.keys, ['smtp.max_recipients'], 'the key that needs a restart, by name');
  const applied = await logged((l) => l.msg === 'reload: applied', from, 'the applied line') as { keys: string[] };
  t.same(applied.keys, ['admin.token', 'log.level', 'shaping.defaults.max_connections']);

  t.equal((await adminFetch(adminPort, '/api/v1/queue')).status, 403, 'the old token no longer opens the API');
  const rotated = await fetch(`http://127.0.0.1:${adminPort}/api/v1/sites`, { headers: { authorization: 'Bearer rotated-token' } });
  t.equal(rotated.status, 200, 'the new one does');
  const many = Array.from({ length: 7 }, (_, i) => `r${i}@a.test`);
  t.match(await sendMail(smtpPort, 'news@campaign.test', many, message({})), /^250 /, 'smtp.max_recipients 5 waits for a restart: 7 recipients still taken');
  await until(() => many.every((r) => sink.received.some((m) => m.rcptTo.includes(r))), 10_000, 'delivered');
  const site = (await (await fetch(`http://127.0.0.1:${adminPort}/api/v1/sites/mx1.a.test`, { headers: { authorization: 'Bearer rotated-token' } })).json()) as { paths: { limits: { max_connections: { value: number } } }[] };
  t.equal(site.paths[0]?.limits.max_connections.value, 3, 'shaping.defaults in force');

  // A warn line written after the delivery: every line of the delivery is before it.
  from = child.lines.length;
  writeFileSync(configPath, 'smtp: [unclosed\n');
  child.proc.kill('SIGHUP');
  const invalid = await logged((l) => String(l.msg).startsWith('reload: the configuration file is invalid'), from, 'the invalid file refused') as { problems: unknown[]; level: number };
  t.ok(invalid.problems.length > 0, 'with its problems');
  t.notOk(child.lines.some((l) => l.event === 'delivered'), 'log.level warn: no info lines since the reload');
  t.equal(child.proc.exitCode, null, 'still running');
  t.equal((await fetch(`http://127.0.0.1:${adminPort}/api/v1/queue`, { headers: { authorization: 'Bearer rotated-token' } })).status, 200, 'with the configuration in force');
  child.proc.kill('SIGTERM');
  t.equal(await child.exited, 0);
});

t.test('SIGHUP with a good and then a bad config while a client relays on one open session: every message 250, the session never dropped', async (t) => {
  world ??= await startWorld();
  const sink = world.sinks.get('127.0.0.2')!;
  const sub = tempDir();
  t.teardown(() => sub.remove());
  const { configPath, smtpPort } = await childConfig(sub.path, world);
  const child = await spawnTern(configPath);
  t.teardown(async () => {
    if (child.proc.exitCode === null) child.proc.kill('SIGKILL');
    await child.exited;
  });
  const { readFileSync } = await import('node:fs');
  const { parse, stringify } = await import('yaml');
  const good = parse(readFileSync(configPath, 'utf8')) as Record<string, any>;
  const { client } = await RawSmtp.open(smtpPort);
  t.teardown(() => client.close());
  t.match(await client.command('EHLO client.test'), /^250/);
  const relay = async (to: string): Promise<string> => {
    await client.command('MAIL FROM:<news@campaign.test>');
    await client.command(`RCPT TO:<${to}>`);
    await client.command('DATA');
    return client.data(`${message({ to })}\r\n.\r\n`);
  };
  t.match(await relay('one@a.test'), /^250 /, 'before any reload');
  const reloaded = (msg: (m: string) => boolean, from: number, what: string) => until(() => child.lines.slice(from).find((l) => msg(String(l.msg))), 10_000, what);

  let from = child.lines.length;
  writeFileSync(configPath, stringify({ ...good, log: { level: 'debug' } }));
  child.proc.kill('SIGHUP');
  await reloaded((m) => m === 'reload: applied', from, 'the good config applied');
  t.match(await relay('two@a.test'), /^250 /, 'on the same session after a good config');

  from = child.lines.length;
  writeFileSync(configPath, 'delivery: { port: "not a port" }\n');
  child.proc.kill('SIGHUP');
  await reloaded((m) => m.startsWith('reload: the configuration file is invalid'), from, 'the bad config refused');
  t.match(await relay('three@a.test'), /^250 /, 'and after a bad one');
  t.match(await client.command('QUIT'), /^221/, 'the session ends when the client ends it');
  await until(() => ['one@a.test', 'two@a.test', 'three@a.test'].every((r) => sink.received.some((m) => m.rcptTo.includes(r))), 10_000, 'all three delivered');
  t.equal(child.proc.exitCode, null, 'still running');
});
