import t from 'tap';
import { MessageRewriter, parseMeta, checkMailbox } from '../../src/ingress/index.ts';

async function rewrite(chunks: string[], maxHeaderBytes = 1024 * 1024): Promise<{ out: string; r: MessageRewriter }> {
  const parts: Buffer[] = [];
  const r = new MessageRewriter({ maxHeaderBytes, prepend: (f) => `Received: x\r\n${f.messageId ? '' : 'Message-ID: <new@tern>\r\n'}` }, (piece) => parts.push(piece));
  for (const c of chunks) r.write(Buffer.from(c, 'latin1'));
  r.end();
  return { out: Buffer.concat(parts).toString('latin1'), r };
}

t.test('X-Tern-Meta is removed, even folded, and its value kept', async (t) => {
  const { out, r } = await rewrite(['Subject: hi\r\nX-Tern-Meta: {"campaign":\r\n  "c1"}\r\nTo: a@b.test\r\n\r\nbody\r\n']);
  t.equal(out, 'Received: x\r\nMessage-ID: <new@tern>\r\nSubject: hi\r\nTo: a@b.test\r\n\r\nbody\r\n');
  t.same(r.facts.metaValues, ['{"campaign":  "c1"}'], 'unfolding removes the line break, not the white space');
  t.equal(r.bytesOut, Buffer.byteLength(out));
});

t.test('an existing Message-ID is kept and reported', async (t) => {
  const { out, r } = await rewrite(['Message-ID: <abc@example>\r\n\r\nx\r\n']);
  t.equal(r.facts.messageId, '<abc@example>');
  t.equal(out, 'Received: x\r\nMessage-ID: <abc@example>\r\n\r\nx\r\n');
});

t.test('bare LF becomes CRLF across chunk boundaries, CRLF split across chunks stays', async (t) => {
  const { out } = await rewrite(['Subject: a\n', '\nline1\r', '\nline2\n', 'line3\n']);
  t.equal(out, 'Received: x\r\nMessage-ID: <new@tern>\r\nSubject: a\r\n\r\nline1\r\nline2\r\nline3\r\n');
});

t.test('the header block may arrive a byte at a time', async (t) => {
  const text = 'From: a@b.test\r\nX-Tern-Meta: {}\r\n\r\nhello\r\n';
  const { out, r } = await rewrite(text.split(''));
  t.equal(out, 'Received: x\r\nMessage-ID: <new@tern>\r\nFrom: a@b.test\r\n\r\nhello\r\n');
  t.same(r.facts.metaValues, ['{}']);
});

t.test('a message with no blank line is all header; one with no header is all body', async (t) => {
  t.equal((await rewrite(['Subject: only\r\n'])).out, 'Received: x\r\nMessage-ID: <new@tern>\r\nSubject: only\r\n\r\n');
  t.equal((await rewrite(['just text\r\nmore\r\n\r\nend\r\n'])).out, 'Received: x\r\nMessage-ID: <new@tern>\r\n\r\njust text\r\nmore\r\n\r\nend\r\n');
});

t.test('an oversized header block is a problem, not a buffer that grows forever', async (t) => {
  const { r, out } = await rewrite([`X-Long: ${'a'.repeat(5000)}\r\n`, 'more: x\r\n'], 1024);
  t.match(r.problem, /header section larger than 1024 bytes/);
  t.equal(out, '');
});

t.test('X-Tern-Meta validation', async (t) => {
  t.same(parseMeta([]), { ok: true, meta: {} });
  t.same(parseMeta(['{"campaign":"c42","validity":"4h","pool":"warm-1"}']), { ok: true, meta: { campaign: 'c42', validity: '4h', pool: 'warm-1' }, validityMs: 14_400_000 });
  t.match(parseMeta(['{oops']), { ok: false, problem: /not valid JSON/ });
  t.match(parseMeta(['"text"']), { ok: false, problem: /must be a JSON object/ });
  t.match(parseMeta(['null']), { ok: false, problem: /must be a JSON object/ });
  t.match(parseMeta(['{"validity":5}']), { ok: false, problem: /"validity" must be a duration/ });
  t.match(parseMeta(['{"pool":"no spaces"}']), { ok: false, problem: /"pool"/ });
  t.match(parseMeta(['{}', '{}']), { ok: false, problem: /more than once/ });
  t.match(parseMeta([`{"x":"${'a'.repeat(20_000)}"}`]), { ok: false, problem: /larger than/ });
});

t.test('mailbox syntax', async (t) => {
  for (const ok of ['a@b.test', 'first.last+tag@sub.example.com', '"quoted local"@example.com', 'ünï@例え.jp']) t.ok(checkMailbox(ok).ok, ok);
  for (const bad of ['plain', '@b.test', 'a@', 'a@b', 'a..b@c.test', 'a@[192.0.2.1]', 'a@-x.test', `${'l'.repeat(65)}@b.test`]) {
    t.notOk(checkMailbox(bad).ok, bad);
  }
});
