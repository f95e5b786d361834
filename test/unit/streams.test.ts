import { PassThrough, Readable, Writable } from 'node:stream';
import t from 'tap';
import { pipeChain } from '../../src/lib/streams.ts';

const collector = (): { stream: Writable; text(): string } => {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({ write(chunk: Buffer, _e, done) { chunks.push(chunk); done(); } }),
    text: () => Buffer.concat(chunks).toString(),
  };
};

t.test('pipeChain carries every byte through and resolves when the last stream finishes', async (t) => {
  const out = collector();
  await pipeChain(Readable.from([Buffer.from('a'), Buffer.from('b')]), new PassThrough(), out.stream);
  t.equal(out.text(), 'ab');
});

t.test('pipeChain rejects on an error anywhere and destroys the rest', async (t) => {
  const source = new PassThrough();
  const middle = new PassThrough();
  const out = collector();
  const done = pipeChain(source, middle, out.stream);
  middle.destroy(new Error('boom'));
  await t.rejects(done, { message: 'boom' });
  t.ok(source.destroyed && out.stream.destroyed);
});

t.test('pipeChain rejects when a stream closes before it ends', async (t) => {
  const source = new PassThrough();
  const out = collector();
  const done = pipeChain(source, out.stream);
  source.write('half');
  source.destroy();
  await t.rejects(done, { code: 'ERR_STREAM_PREMATURE_CLOSE' });
});
