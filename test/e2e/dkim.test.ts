import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startTern, tempDir, testConfig, type RunningTern } from '../support/daemon.ts';
import { makeKeys, verifyWithDkimpy, verifyWithMailauth } from '../support/dkim.ts';
import { RawSmtp, until } from '../support/smtp-client.ts';
import { startWorld, type World } from '../support/world.ts';

let world: World;
let tern: RunningTern;
const spool = tempDir();
const keyDir = tempDir('tern-keys-');
const keys = makeKeys(keyDir.path);
// A working copy of the RSA key file, so the reload test can break it and mend it.
const liveRsa = join(keyDir.path, 'live-rsa.pem');
copyFileSync(keys.entries[0]!.key_file, liveRsa);

t.before(async () => {
  world = await startWorld();
  tern = await startTern(testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: spool.path,
    dkim: { keys: [{ ...keys.entries[0], key_file: liveRsa }, keys.entries[1]] },
  }));
});
t.teardown(async () => {
  await tern.stop();
  await world.close();
  spool.remove();
  keyDir.remove();
});

async function relay(rcpt: string, raw: string): Promise<Buffer> {
  const { client } = await RawSmtp.open(tern.smtpPort);
  await client.command('EHLO client.test');
  await client.command('MAIL FROM:<news@example.com> BODY=8BITMIME SMTPUTF8');
  await client.command(`RCPT TO:<${rcpt}>`);
  await client.command('DATA');
  const reply = await client.data(Buffer.concat([Buffer.from(raw, 'utf8'), Buffer.from('\r\n.\r\n')]));
  client.close();
  if (!reply.startsWith('250')) throw new Error(reply);
  const [got] = await until(() => {
    const found = world.sinks.get('127.0.0.2')!.received.filter((m) => m.rcptTo.includes(rcpt));
    return found.length > 0 && found;
  });
  return got!.data;
}

t.test('a relayed message arrives signed with both keys, verified by dkimpy and mailauth', async (t) => {
  // Bare LF, a UTF-8 header and X-Tern-Meta: Tern rewrites all of that before it signs.
  const raw = 'From: "Zoë" <news@example.com>\nTo: reader@a.test\nSubject: Grüße\nX-Tern-Meta: {"campaign":"c1"}\n\nHello\nbare LF body\n';
  const data = await relay('reader@a.test', raw);
  const text = data.toString('utf8');
  t.match(text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.com; s=rsa1;/);
  t.match(text, /\r\nDKIM-Signature: v=1; a=ed25519-sha256;/);
  t.match(text, /\r\nReceived: from client\.test/, 'Tern\'s Received header comes after the signatures (and is not signed)');
  t.same(verifyWithDkimpy(data, keys.txt, keyDir.path), [true, true], 'dkimpy');
  t.same(await verifyWithMailauth(data, keys.txt), ['pass', 'pass'], 'mailauth');
});

t.test('mail from a domain without a key is not signed', async (t) => {
  const data = await relay('other@a.test', 'From: someone@unlisted.test\r\nSubject: x\r\n\r\nhi\r\n');
  t.notMatch(data.toString(), /DKIM-Signature/);
});

t.test('SIGHUP reload: a bad key keeps the old one; a good one replaces it', async (t) => {
  writeFileSync(liveRsa, 'not a key');
  const bad = tern.daemon.reload();
  t.equal(bad.ok, false);
  t.match(bad.problems, [/dkim\.keys\[0\]\.key_file: .* is not a PEM private key/]);
  const still = await relay('after-bad@a.test', 'From: news@example.com\r\nSubject: x\r\n\r\nhi\r\n');
  t.same(verifyWithDkimpy(still, keys.txt, keyDir.path), [true, true], 'still signing with the old keys');
  copyFileSync(keys.entries[0]!.key_file, liveRsa);
  t.same(tern.daemon.reload(), { ok: true, problems: [], applied: [], restart: [] });
  t.ok(tern.logs.some((l) => l.msg === 'reload: DKIM keys not replaced; the previous keys stay in use'), 'the refusal is logged');
});
