import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { createSigner, fromDomain, keysFor, loadKeys, MessageHasher } from '../../src/dkim/index.ts';
import { parseHeaderFields } from '../../src/dkim/canonical.ts';
import { tempDir } from '../support/daemon.ts';
import { makeKeys, verifyWithDkimpy, verifyWithMailauth } from '../support/dkim.ts';

const dir = tempDir('tern-dkim-');
t.teardown(() => dir.remove());
const keys = makeKeys(dir.path);

/** Sign as the daemon does: hash while streaming in chunks, then sign the header block. */
async function signed(message: Buffer, chunkSize = 7_000): Promise<Buffer> {
  const signing = createSigner(keys.keys).begin(1_795_000_000_000);
  for (let i = 0; i < message.length; i += chunkSize) signing.write(message.subarray(i, i + chunkSize));
  const signature = await signing.finish();
  return Buffer.concat([Buffer.from(signature, 'latin1'), message]);
}

const crlf = (s: string) => Buffer.from(s.replace(/\r?\n/g, '\r\n'), 'latin1');
const utf8 = (s: string) => Buffer.from(s.replace(/\r?\n/g, '\r\n'), 'utf8');

const MESSAGES: Record<string, Buffer> = {
  'plain ASCII': crlf('From: News <news@example.com>\nTo: a@b.test\nSubject: Hello\nDate: Mon, 23 Nov 2026 10:00:00 +0000\nMessage-ID: <1@example.com>\n\nHello  world. \n\n\n'),
  '8-bit body': Buffer.concat([crlf('From: news@example.com\nSubject: 8bit\nContent-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n'), Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0d, 0x0a])]),
  'UTF-8 headers': utf8('From: "Jürgen Größ" <jürgen@example.com>\nTo: "Zoë" <zoe@b.test>\nSubject: Grüße aus Köln ✉\n\nUnicode body: 日本語\n'),
  'folded headers': crlf('From: news@example.com\nTo: a@b.test,\n  c@d.test,\n\te@f.test\nSubject: a subject that is\n   folded   over\n\tthree lines\nList-Unsubscribe: <mailto:u@example.com>,\n <https://example.com/u>\n\nbody\n'),
  'long lines': crlf(`From: news@example.com\nSubject: long\n\n${'x'.repeat(5000)}\n${'y '.repeat(3000)}\n`),
  'empty body': crlf('From: news@example.com\nSubject: nothing\n\n'),
  multipart: crlf('From: news@example.com\nSubject: parts\nMIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b1"\n\n--b1\nContent-Type: text/plain\n\nplain  part \n--b1\nContent-Type: text/html\n\n<p>html</p>\n--b1--\n'),
};

t.test('signatures verify with dkimpy and mailauth, RSA and Ed25519 alike', async (t) => {
  for (const [name, message] of Object.entries(MESSAGES)) {
    const out = await signed(message);
    t.same(verifyWithDkimpy(out, keys.txt, dir.path), [true, true], `${name}: dkimpy`);
    t.same(await verifyWithMailauth(out, keys.txt), ['pass', 'pass'], `${name}: mailauth`);
  }
});

t.test('a 10 MB body signs and verifies', async (t) => {
  const line = `${'0123456789'.repeat(7)}\n`;
  const body = line.repeat(Math.ceil(10_000_000 / line.length));
  const out = await signed(crlf(`From: news@example.com\nSubject: big\n\n${body}`), 64 * 1024);
  t.same(verifyWithDkimpy(out, keys.txt, dir.path), [true, true]);
});

t.test('tampering is detected: the check can fail', async (t) => {
  const out = await signed(MESSAGES['plain ASCII'] as Buffer);
  const text = out.toString('latin1');
  const body = Buffer.from(text.replace('Hello  world.', 'Hello w0rld.'), 'latin1');
  t.same(verifyWithDkimpy(body, keys.txt, dir.path), [false, false], 'changed body');
  const subject = Buffer.from(text.replace('Subject: Hello', 'Subject: Win a prize'), 'latin1');
  t.same(verifyWithDkimpy(subject, keys.txt, dir.path), [false, false], 'changed subject');
  const injected = Buffer.from(text.replace('To: a@b.test', 'From: attacker@evil.test\r\nTo: a@b.test'), 'latin1');
  t.same(verifyWithDkimpy(injected, keys.txt, dir.path), [false, false], 'an added From header breaks the over-signed signature');
  t.notOk((await verifyWithMailauth(body, keys.txt)).includes('pass'), 'mailauth agrees (it says neutral: body hash mismatch)');
});

t.test('the signature has the promised shape', async (t) => {
  const out = (await signed(MESSAGES['folded headers'] as Buffer)).toString('latin1');
  const header = out.slice(0, out.indexOf('\r\nFrom:'));
  t.match(header, /a=rsa-sha256; c=relaxed\/relaxed; d=example\.com; s=rsa1;/);
  t.match(header, /a=ed25519-sha256;/);
  t.match(header.replace(/\r\n\s*/g, ''), /h=from:from:subject:subject:to:list-unsubscribe;/, 'From and Subject over-signed');
  t.match(header, /t=1795000000;/);
  t.ok(header.split('\r\n').every((l) => l.length <= 78), 'folded under 78 columns');
});

t.test('key problems are config errors naming the entry', async (t) => {
  const weak = join(dir.path, 'weak.pem');
  writeFileSync(weak, generateKeyPairSync('rsa', { modulusLength: 768 }).privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const notKey = join(dir.path, 'junk.pem');
  writeFileSync(notKey, 'hello');
  const { keys: loaded, problems } = loadKeys([
    { domain: 'example.com', selector: 's0', key_file: keys.entries[0]!.key_file, algorithm: 'rsa-sha256' },
    { domain: 'example.com', selector: 's1', key_file: join(dir.path, 'missing.pem'), algorithm: 'rsa-sha256' },
    { domain: 'example.com', selector: 's2', key_file: weak, algorithm: 'rsa-sha256' },
    { domain: 'example.com', selector: 's3', key_file: notKey, algorithm: 'rsa-sha256' },
    { domain: 'example.com', selector: 's4', key_file: keys.entries[1]!.key_file, algorithm: 'rsa-sha256' },
  ]);
  t.equal(loaded.length, 1);
  t.match(problems, [
    { path: 'dkim.keys[1].key_file', problem: /cannot read .*ENOENT/ },
    { path: 'dkim.keys[2].key_file', problem: /768 bits is too weak/ },
    { path: 'dkim.keys[3].key_file', problem: /not a PEM private key/ },
    { path: 'dkim.keys[4].key_file', problem: /needs an RSA key, this is ed25519/ },
  ]);
});

t.test('the signing domain: From domain, else its closest parent, else a fallback key', async (t) => {
  const other = makeKeys(dir.path, 'mail.example.com');
  const fallback = { ...keys.keys[0]!, domain: 'esp.example', fallback: true };
  const all = [...keys.keys, ...other.keys, fallback];
  t.same(keysFor(all, 'example.com').map((k) => k.domain), ['example.com', 'example.com'], 'both keys of the domain: dual signing');
  t.same(keysFor(all, 'mail.example.com').map((k) => k.domain), ['mail.example.com', 'mail.example.com']);
  t.same(keysFor(all, 'news.example.com').map((k) => k.domain), ['example.com', 'example.com'], 'closest configured parent');
  t.same(keysFor(all, 'unlisted.test').map((k) => k.domain), ['esp.example'], 'fallback for unlisted senders');
  t.same(keysFor(keys.keys, 'unlisted.test'), [], 'no fallback: not signed');
  const domainOf = (from: string) => fromDomain(parseHeaderFields(`From: ${from}\r\n`));
  t.equal(domainOf('"Ann, Sales" <ann@Example.COM>'), 'example.com');
  t.equal(domainOf('bob@news.example.com (Bob)'), 'news.example.com');
  t.equal(domainOf('undisclosed'), undefined);
});

t.test('the streamed body hash matches a one-shot canonicalization, however the body is split', async (t) => {
  const { createHash } = await import('node:crypto');
  const oneShot = (body: string): string => {
    let lines = body.split('\r\n');
    if (lines.at(-1) === '') lines.pop();
    lines = lines.map((l) => l.replace(/[ \t]+/g, ' ').replace(/ $/, ''));
    while (lines.at(-1) === '') lines.pop();
    return createHash('sha256').update(lines.map((l) => `${l}\r\n`).join(''), 'latin1').digest('base64');
  };
  const bodies = [
    'plain\r\nlines\r\n', 'trailing  \t \r\n\r\n\r\n', 'tabs\tand  spaces \r\n \r\n\t\r\nend', '\r\n\r\n\r\n', '',
    'a\r\n\r\nb\r\n\r\n', 'no final line end', 'x \r\n'.repeat(50) + '\r\n'.repeat(5), 'caf\xe9  \xe9t\xe9\r\n',
  ];
  for (const body of bodies) {
    const message = Buffer.from(`Subject: s\r\n\r\n${body}`, 'latin1');
    for (const size of [1, 2, 3, 5, 17, 4096]) {
      const hasher = new MessageHasher();
      for (let i = 0; i < message.length; i += size) hasher.write(message.subarray(i, i + size));
      hasher.end();
      t.equal(hasher.bodyHash(), oneShot(body), `${JSON.stringify(body.slice(0, 30))} in ${size}-byte chunks`);
    }
  }
});
