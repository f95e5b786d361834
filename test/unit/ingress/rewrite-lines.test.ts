import t from 'tap';
import { MessageRewriter } from '../../../src/ingress/index.ts';

function rewrite(chunks: readonly Buffer[], maxHeaderBytes = 1024 * 1024): { out: Buffer; r: MessageRewriter } {
  const parts: Buffer[] = [];
  const r = new MessageRewriter({ maxHeaderBytes, prepend: () => 'Received: x\r\n' }, (piece) => parts.push(piece));
  for (const c of chunks) r.write(c);
  r.end();
  return { out: Buffer.concat(parts), r };
}

const split = (text: string, size: number): Buffer[] => {
  const whole = Buffer.from(text, 'latin1');
  const out: Buffer[] = [];
  for (let i = 0; i < whole.length; i += size) out.push(whole.subarray(i, i + size));
  return out;
};

t.test('bare CR becomes CRLF, in the header and the body, whatever the chunking', async (t) => {
  const text = 'Subject: a\rX-B: b\r\n\r\nA\r.\r\nB\r\rC\n.\nD\r';
  const expected = 'Received: x\r\nSubject: a\r\nX-B: b\r\n\r\nA\r\n.\r\nB\r\n\r\nC\r\n.\r\nD\r\n';
  for (let size = 1; size <= text.length; size++) {
    t.equal(rewrite(split(text, size)).out.toString('latin1'), expected, `chunks of ${size}`);
  }
});

t.test('a CR at the end of one chunk and an LF at the start of the next stay one CRLF', async (t) => {
  const { out } = rewrite([Buffer.from('S: 1\r\n\r\nline\r'), Buffer.from('\nnext\r'), Buffer.from('\n')]);
  t.equal(out.toString('latin1'), 'Received: x\r\nS: 1\r\n\r\nline\r\nnext\r\n');
});

t.test('after rewriting, no CR or LF stands alone: a dot after one can only start a real line', async (t) => {
  const { out } = rewrite([Buffer.from('S: 1\r\n\r\nA\r.\r\nB\n.\nC\r\n\0.\r\nD\r\n')]);
  const text = out.toString('latin1');
  t.notMatch(text, /\r(?!\n)/, 'no bare CR');
  t.notMatch(text, /(?<!\r)\n/, 'no bare LF');
  t.match(text, /A\r\n\.\r\nB\r\n\.\r\nC\r\n/);
});

t.test('a blank line made of bare CRs ends the header block, as it will on the wire', async (t) => {
  const { out } = rewrite([Buffer.from('S: 1\r\rbody\r')]);
  t.equal(out.toString('latin1'), 'Received: x\r\nS: 1\r\n\r\nbody\r\n');
});

/**
 * Bytes the rewriter searches for the header's blank line, and bytes it copies with Buffer.concat,
 * while `run` runs: a re-scan from the start for each chunk makes both grow with the square of
 * the header (512 KiB in 1 KiB chunks: ~128 MiB each), a scan of each new chunk keeps them linear.
 */
function searchedAndCopied(run: () => void): { searched: number; copied: number } {
  const needle = Buffer.from('\r\n\r\n');
  const { indexOf } = Buffer.prototype;
  const { concat } = Buffer;
  let searched = 0;
  let copied = 0;
  Buffer.prototype.indexOf = function (this: Buffer, value: unknown, byteOffset?: unknown, encoding?: unknown) {
    if (Buffer.isBuffer(value) && value.equals(needle)) searched += this.length - (typeof byteOffset === 'number' ? byteOffset : 0);
    return indexOf.call(this, value as Buffer, byteOffset as number, encoding as BufferEncoding);
  };
  Buffer.concat = (list: readonly Uint8Array[], totalLength?: number) => {
    const out = concat(list, totalLength);
    copied += out.length;
    return out;
  };
  try {
    run();
  } finally {
    Buffer.prototype.indexOf = indexOf;
    Buffer.concat = concat;
  }
  return { searched, copied };
}

t.test('512 KiB of header in 1 KiB chunks: same output as in one chunk, each byte searched and copied about once', async (t) => {
  const header = Array.from({ length: 8192 }, (_, i) => `X-Filler-${i}: ${'v'.repeat(50)}\r\n`).join('').slice(0, 512 * 1024 - 2).replace(/[^\n]*$/, '') ;
  const text = `${header}Subject: end\r\n\r\nbody line\r\n`;
  t.ok(header.length > 500 * 1024, `header block of ${header.length} bytes`);
  let whole: Buffer = Buffer.alloc(0);
  let chunked: Buffer = Buffer.alloc(0);
  const one = searchedAndCopied(() => (whole = rewrite([Buffer.from(text, 'latin1')]).out));
  const many = searchedAndCopied(() => (chunked = rewrite(split(text, 1024)).out));
  t.ok(chunked.equals(whole), 'identical output');
  t.match(whole.toString('latin1'), /Subject: end\r\n\r\nbody line\r\n$/);
  t.ok(many.searched < 1.1 * text.length, `searched ${many.searched} bytes for the blank line in 1 KiB chunks (one chunk: ${one.searched}) for ${text.length}`);
  // The header is joined once when its end is found, and the test's own Buffer.concat of the output once more.
  t.ok(many.copied < 2.1 * text.length + 8192, `copied ${many.copied} bytes in 1 KiB chunks (one chunk: ${one.copied})`);
});

t.test('the header end straddling two chunks is found at every cut', async (t) => {
  const text = 'A: 1\r\nB: 2\r\n\r\nbody\r\n';
  const expected = rewrite([Buffer.from(text)]).out.toString('latin1');
  for (let cut = 1; cut < text.length; cut++) {
    t.equal(rewrite([Buffer.from(text.slice(0, cut)), Buffer.from(text.slice(cut))]).out.toString('latin1'), expected, `cut at ${cut}`);
  }
});

t.test('a header block over the limit is a problem whatever the chunking', async (t) => {
  const text = `X-Long: ${'a'.repeat(3000)}\r\n\r\nbody\r\n`;
  t.match(rewrite(split(text, 100), 2048).r.problem, /header section larger than 2048 bytes/);
  t.match(rewrite([Buffer.from(text)], 2048).r.problem, /header section larger than 2048 bytes/);
});
