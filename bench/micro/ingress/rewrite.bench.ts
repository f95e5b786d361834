/**
 * The DATA-path rewriter alone: µs per 10 KB message, in one chunk and in 1 KiB chunks.
 *
 *   node bench/micro/ingress/rewrite.bench.ts            # this tree
 *   node bench/micro/ingress/rewrite.bench.ts /tmp/old   # another checkout's rewriter, to compare
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = resolve(process.argv[2] ?? new URL('../../../', import.meta.url).pathname);
const { MessageRewriter } = (await import(pathToFileURL(`${root}/src/ingress/rewrite.ts`).href)) as typeof import('../../../src/ingress/rewrite.ts');
const header = 'From: a@example.com\r\nTo: b@example.com\r\nSubject: hello\r\nMessage-ID: <x@y>\r\n\r\n';
const message = Buffer.from(header + `${'x'.repeat(76)}\r\n`.repeat(130), 'latin1');
const chunks = Array.from({ length: Math.ceil(message.length / 1024) }, (_, i) => message.subarray(i * 1024, (i + 1) * 1024));
const N = 50_000;
let sink = 0;

for (const [name, pieces] of [['one chunk', [message]], ['1 KiB chunks', chunks]] as const) {
  for (let round = 0; round < 3; round++) {
    const started = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const r = new MessageRewriter({ maxHeaderBytes: 1 << 20, prepend: () => 'Received: x\r\n' }, (p) => { sink += p.length; });
      for (const piece of pieces) r.write(piece);
      r.end();
    }
    console.log(`${name}: ${(Number(process.hrtime.bigint() - started) / 1000 / N).toFixed(2)} µs per ${message.length}-byte message`);
  }
}
if (sink === 0) console.log('nothing written');
