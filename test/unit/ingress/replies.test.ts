import { readFileSync } from 'node:fs';
import t from 'tap';
import { REPLIES, render, sanitise } from '../../../src/ingress/smtp-server.ts';

const DOC = readFileSync(new URL('../../../docs/replies.md', import.meta.url), 'utf8');

t.test('docs/replies.md lists every catalogue entry exactly (code, enhanced code, text, when)', async (t) => {
  const missing = Object.entries(REPLIES)
    .map(([key, e]) => `| \`${key}\` | ${e.code} | ${e.enhanced || '—'} | \`${e.text || ' '}\` | ${e.when} |`)
    .filter((row) => !DOC.includes(row));
  t.same(missing, [], 'rows to put in docs/replies.md');
  const documented = [...DOC.matchAll(/^\| `(\w+)` \|/gm)].map((m) => m[1]);
  t.same(documented.filter((key) => !(key as string in REPLIES)), [], 'no row for a reply that no longer exists');
  const serverFaults = Object.entries(REPLIES).filter(([, e]) => 'serverFault' in e).map(([key]) => `\`${key}\``);
  t.match(DOC, new RegExp(`Server-fault entries \\(not counted against the client\\): ${serverFaults.join(',\\s+')}\\.`), 'the server-fault list');
});

t.test('every entry is well formed: a reply code, an enhanced code of the same class', async (t) => {
  for (const [key, e] of Object.entries(REPLIES)) {
    t.ok(e.code >= 200 && e.code < 600, `${key}: code`);
    if (e.enhanced !== '') t.equal(e.enhanced[0], String(e.code)[0], `${key}: enhanced class matches`);
    t.notOk(/[\r\n]/.test(e.text), `${key}: one line`);
  }
});

t.test('rendering quotes client text sanitised: no control characters, capped', async (t) => {
  const reply = render(REPLIES.badRecipient, { address: `evil\r\n250 ok\x00${'x'.repeat(500)}`, problem: 'bad' });
  t.equal(reply.code, 553);
  t.notMatch(reply.text, /[\x00-\x1f]/);
  t.match(reply.text, /^5\.1\.3 Bad recipient address <evil\?\?250 ok\?x+\.\.\.>: bad$/);
  t.equal(sanitise('ok'), 'ok');
});
