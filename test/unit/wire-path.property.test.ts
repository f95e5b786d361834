import { createServer, connect, type Server, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import t from 'tap';
import { connectClient, type ClientConnection } from '../../src/delivery/smtp-client.ts';
import { MessageRewriter } from '../../src/ingress/rewrite.ts';
import { SmtpServer, type DataStream } from '../../src/ingress/smtp-server.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { newQueueId, type QueueId } from '../../src/model/ids.ts';
import { openSpool, type Spool } from '../../src/spool/index.ts';
import { tempDir } from '../support/daemon.ts';

/**
 * The whole path a message's bytes take, driven by generated hostile input: an upstream client
 * sends arbitrary bytes after DATA (bare CR and LF, NUL, dots at every kind of line start, long
 * lines, its own early terminator) in arbitrary TCP pieces; Tern's listener reads them, the
 * rewriter normalises them, a real spool on disk stores them (small ones in its segment log, larger
 * ones in a file each, no body cache: each read goes to the disk), and Tern's client stuffs what
 * it reads back and sends it, in arbitrary pieces, to a receiver that only records bytes. Properties:
 * - what is stored is refused exactly when the input holds a NUL or a long line; else it has no
 *   bare CR or LF, and, for a message that starts with a header block, it is the reference
 *   model of the input: unstuffed, up to the client's first terminator, bare CR/LF made CRLF
 *   (a message without one has its lines sorted into header fields and body by the rewriter,
 *   as Postfix's cleanup does; tested in rewrite.test.ts);
 * - the spool gives back exactly the bytes it was given;
 * - the outgoing wire has no bare CR or LF, and its first CRLF.CRLF is its last bytes: nothing
 *   can end DATA early toward any receiver;
 * - the receiver, unstuffing, gets back exactly what was stored.
 */
const LINE_LIMIT = 998;
const CRLF_DOT_CRLF = Buffer.from('\r\n.\r\n');

// ----- reference model (plain, slow, obviously right) -----

/** The message part of what the upstream sent: up to its first CRLF.CRLF (that CRLF included). */
function firstMessage(wire: Buffer): Buffer {
  if (wire.subarray(0, 3).equals(Buffer.from('.\r\n'))) return Buffer.alloc(0);
  const at = wire.indexOf(CRLF_DOT_CRLF);
  return wire.subarray(0, at + 2);
}

/** RFC 5321 §4.5.2 receiver side: a dot at a line start (after CRLF) is dropped. */
function unstuff(data: Buffer): Buffer {
  const out: number[] = [];
  for (let i = 0; i < data.length; i++) {
    const lineStart = i === 0 || (data[i - 1] === 0x0a && data[i - 2] === 0x0d);
    if (lineStart && data[i] === 0x2e) continue;
    out.push(data[i] as number);
  }
  return Buffer.from(out);
}

function normalise(data: Buffer): Buffer {
  return Buffer.from(data.toString('latin1').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
}

function refusedByModel(message: Buffer): boolean {
  if (message.includes(0)) return true;
  return message.toString('latin1').split('\n').some((line) => line.replace(/\r$/, '').length > LINE_LIMIT);
}

const hasBareCrOrLf = (data: Buffer): boolean => /\r(?!\n)|(?<!\r)\n/.test(data.toString('latin1'));

// ----- the parts under test -----

/** Tern's listener; its data hook runs the rewriter as ingress does and spools the result. */
async function ingress(spool: Spool): Promise<{ server: SmtpServer; port: number; stored: (Stored | string)[] }> {
  const stored: (Stored | string)[] = [];
  const server = new SmtpServer({ name: 'tern.test', banner: '', size: 10_000_000, maxRecipients: 10, maxClients: 100, socketTimeout: 10_000, authOffered: () => false, exemptFromClientLimits: () => true }, {
    auth: () => ({ code: 535, text: '5.7.8 no' }),
    mailFrom: () => undefined,
    rcptTo: () => undefined,
    async data(stream: DataStream) {
      const out: Buffer[] = [];
      const rewriter = new MessageRewriter({ maxHeaderBytes: 1_000_000, prepend: () => '' }, (piece) => out.push(Buffer.from(piece)));
      for await (const chunk of stream) rewriter.write(chunk as Buffer);
      rewriter.end();
      const refusal = stream.refusal ?? (rewriter.problem ? { code: 554, text: `5.6.0 ${rewriter.problem}` } : undefined);
      if (refusal) {
        stored.push(`${refusal.code}`);
        return refusal;
      }
      const bytes = Buffer.concat(out);
      const id = newQueueId(Date.now());
      const writer = await spool.begin(id);
      for (const piece of out) await writer.write(piece);
      await writer.commit({
        id, sender: 'a@up.test', recipients: [{ address: 'b@down.test' }], messageId: '<m@up.test>', meta: {},
        receivedAt: Date.now(), expiresAt: Date.now() + 60_000, smtputf8: false, eightBit: true, client: { ip: '127.0.0.1', helo: 'up.test' }, bodySize: bytes.length,
      });
      stored.push({ id, bytes });
      return '2.0.0 Ok';
    },
  });
  await server.listen(0, '127.0.0.1');
  return { server, port: (server.server.address() as { port: number }).port, stored };
}

/** A receiver that records the bytes of each DATA up to the first CRLF.CRLF, and what follows it. */
async function recorder(): Promise<{ server: Server; port: number; messages: { data: Buffer; after: Buffer }[] }> {
  const messages: { data: Buffer; after: Buffer }[] = [];
  const server = createServer((socket) => {
    let inData = false;
    let buffer = Buffer.alloc(0);
    socket.write('220 rec.test ESMTP\r\n');
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          const probe = Buffer.concat([Buffer.from('\r\n'), buffer]);
          const end = probe.indexOf(CRLF_DOT_CRLF);
          if (end === -1) return;
          messages.push({ data: buffer.subarray(0, end), after: probe.subarray(end + 5) });
          buffer = Buffer.alloc(0);
          inData = false;
          socket.write('250 2.0.0 kept\r\n');
          continue;
        }
        const lf = buffer.indexOf('\r\n');
        if (lf === -1) return;
        const line = buffer.subarray(0, lf).toString('latin1').toUpperCase();
        buffer = buffer.subarray(lf + 2);
        if (line.startsWith('EHLO')) socket.write('250-rec.test\r\n250 8BITMIME\r\n');
        else if (line === 'DATA') {
          inData = true;
          socket.write('354 go\r\n');
        } else if (line === 'QUIT') socket.end('221 bye\r\n');
        else socket.write('250 ok\r\n');
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as { port: number }).port, messages };
}

/** Reply lines until the one that answers DATA's content (the line after 354). */
async function sendRaw(port: number, pieces: readonly Buffer[]): Promise<string> {
  const socket: Socket = connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  const lines: string[] = [];
  let waiter: (() => void) | undefined;
  socket.on('data', (c: Buffer) => {
    lines.push(...c.toString('latin1').split('\r\n').filter(Boolean));
    waiter?.();
  });
  socket.on('error', () => undefined);
  const waitFor = (n: number): Promise<void> => new Promise((resolve) => {
    const check = (): void => (lines.length >= n ? resolve() : undefined);
    waiter = check;
    check();
  });
  await waitFor(1);
  socket.write('EHLO up.test\r\nMAIL FROM:<a@up.test>\r\nRCPT TO:<b@down.test>\r\nDATA\r\n');
  await new Promise<void>((resolve) => {
    waiter = () => (lines.some((l) => l.startsWith('354')) ? resolve() : undefined);
    waiter();
  });
  const before = lines.length;
  for (const piece of pieces) socket.write(piece);
  await waitFor(before + 1);
  socket.destroy();
  return lines[before] as string;
}

/** Arbitrary bytes, heavy on what SMTP treats specially. */
const token = fc.constantFrom('\r\n', '\r', '\n', '.', '..', '\r\n.', '\r\n..', '\n.', '\r.', '\n.\n', '\r.\r', '\0', 'A', 'Subject: x', ':', ' ', '\t', '\xe9', 'x'.repeat(500));
const HEADER = 'Subject: generated\r\n\r\n';
const content = fc.tuple(fc.boolean(), fc.array(token, { maxLength: 40 })).map(([headed, parts]) => Buffer.from((headed ? HEADER : '') + parts.join(''), 'latin1'));
/** Cut points for a buffer, as fractions: the same input arrives in many TCP shapes. */
const cuts = fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 6 });
const split = (data: Buffer, at: readonly number[]): Buffer[] => {
  const points = [...new Set(at.map((f) => Math.floor(f * data.length)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let from = 0;
  for (const p of points) {
    if (p > from) parts.push(data.subarray(from, p));
    from = Math.max(from, p);
  }
  parts.push(data.subarray(from));
  return parts.filter((p) => p.length > 0);
};

interface Stored { readonly id: QueueId; readonly bytes: Buffer }

t.test('ingress → rewrite → spool → dot-stuffing → client: stored as the model says, clean on the wire, round-tripped', async (t) => {
  const dir = tempDir();
  const INLINE_MAX = 256;
  const spool = openSpool({ dir: dir.path, min_free: 0, inline_max: INLINE_MAX, segment_size: 4 * 1024 * 1024, body_cache: 0 }, systemClock);
  await spool.recover();
  const tern = await ingress(spool);
  const receiver = await recorder();
  let client: ClientConnection | undefined;
  const open = (): Promise<ClientConnection> => connectClient({
    host: '127.0.0.1', servername: 'rec.test', port: receiver.port, localName: 'tern.test', tls: 'none',
    timeouts: { connect: 2_000, greeting: 2_000, command: 5_000, data: 5_000 },
  });
  t.teardown(async () => {
    client?.close();
    await tern.server.close();
    await new Promise((r) => receiver.server.close(r));
    await spool.close();
    dir.remove();
  });
  let cases = 0;
  let refused = 0;
  let earlyEnds = 0;
  let ownFiles = 0;
  await fc.assert(fc.asyncProperty(content, cuts, cuts, async (body, inCuts, outCuts) => {
    cases++;
    const wire = Buffer.concat([body, CRLF_DOT_CRLF]);
    const reply = await sendRaw(tern.port, split(wire, inCuts));
    const kept = tern.stored.at(-1);
    const message = unstuff(firstMessage(wire));
    if (firstMessage(wire).length + 3 < wire.length) earlyEnds++;
    if (refusedByModel(message)) {
      refused++;
      if (reply.startsWith('550 5.6.0') && kept === '550') return true;
      throw new Error(`expected a refusal, got ${reply}`);
    }
    if (!reply.startsWith('250') || kept === undefined || typeof kept === 'string') throw new Error(`refused: ${reply}`);
    const stored = kept.bytes;
    if (hasBareCrOrLf(stored)) throw new Error(`stored with a bare CR or LF: ${JSON.stringify(stored.toString('latin1'))}`);
    if (body.subarray(0, HEADER.length).toString('latin1') === HEADER && !stored.equals(normalise(message))) throw new Error(`stored ${JSON.stringify(stored.toString('latin1'))}, model ${JSON.stringify(normalise(message).toString('latin1'))}`);
    const readBack = Buffer.concat(await spool.openBody(kept.id, stored.length).toArray() as Buffer[]);
    if (!readBack.equals(stored)) throw new Error(`the spool gave back ${JSON.stringify(readBack.toString('latin1'))} for ${JSON.stringify(stored.toString('latin1'))}`);
    if (stored.length > INLINE_MAX) ownFiles++;
    await spool.remove(kept.id);
    if (stored.length === 0) return true;
    client = client && !client.closed ? client : await open();
    const result = await client.send({ sender: 'a@up.test', recipients: ['b@down.test'], size: stored.length, eightBit: true }, Readable.from(split(readBack, outCuts)));
    if (result.kind !== 'transaction' || !result.replies.every((r) => r.code === 250)) throw new Error(`send: ${JSON.stringify(result)}`);
    const sent = receiver.messages.at(-1);
    if (!sent || sent.after.length > 0) throw new Error(`received ${JSON.stringify(sent?.data.toString('latin1'))} then ${JSON.stringify(sent?.after.toString('latin1'))}`);
    const expected = stored.subarray(-2).toString() === '\r\n' ? stored : Buffer.concat([stored, Buffer.from('\r\n')]);
    if (hasBareCrOrLf(sent.data)) throw new Error(`bare CR or LF on the wire: ${JSON.stringify(sent.data.toString('latin1'))}`);
    if (!unstuff(sent.data).equals(expected)) throw new Error(`receiver got ${JSON.stringify(unstuff(sent.data).toString('latin1'))}, stored ${JSON.stringify(stored.toString('latin1'))}`);
    return true;
  }), { numRuns: 300 });
  t.ok(cases >= 300, `${cases} generated messages`);
  t.ok(refused > 10 && refused < cases, `${refused} refused for a NUL or a long line, the rest relayed`);
  t.ok(ownFiles > 0, `${ownFiles} large enough for a spool file of their own, the rest in the segment log`);
  t.comment(`${earlyEnds} carried the upstream's own early terminator`);
});
