import { Readable, type Duplex, type Writable } from 'node:stream';

/** A stream of `prefix` followed by `rest`, with back-pressure and errors carried through. */
export function prefixed(prefix: string, rest: Readable): Readable {
  if (prefix === '') return rest;
  return Readable.from((async function* () {
    yield Buffer.from(prefix, 'latin1');
    yield* rest;
  })(), { objectMode: false });
}

/**
 * `stream.pipeline` for a chain of streams, minus the AbortController it builds and aborts on
 * every call: that DOMException (stack trace and all) cost ~2 % of CPU at a thousand messages a
 * second. Resolves when the last stream finishes; on the first error or premature close, destroys
 * every stream and rejects.
 */
export function pipeChain(first: Readable, ...rest: [...Duplex[], Writable]): Promise<void> {
  const all: (Readable | Duplex | Writable)[] = [first, ...rest];
  const last = rest.at(-1) as Writable;
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      for (const s of all) s.destroy();
      reject(err);
    };
    for (const s of all) {
      s.on('error', fail);
      s.once('close', () => {
        const done = s === last ? last.writableFinished : (s as Readable).readableEnded;
        if (!done) fail(Object.assign(new Error('premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
      });
    }
    last.once('finish', () => {
      settled = true;
      resolve();
    });
    let upstream: Readable = first;
    for (const s of rest) {
      upstream.pipe(s);
      upstream = s as Duplex;
    }
  });
}
