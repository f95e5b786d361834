import { Readable } from 'node:stream';

/** A stream of `prefix` followed by `rest`, with back-pressure and errors carried through. */
export function prefixed(prefix: string, rest: Readable): Readable {
  if (prefix === '') return rest;
  return Readable.from((async function* () {
    yield Buffer.from(prefix, 'latin1');
    yield* rest;
  })(), { objectMode: false });
}
