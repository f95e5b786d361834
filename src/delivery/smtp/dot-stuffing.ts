const DOT = Buffer.from('.');

/** RFC 5321 §4.5.2: a line that starts with "." gets one more. */
export function stuffDots(chunk: Buffer, atLineStart: boolean): Buffer {
  const lead = atLineStart && chunk[0] === 0x2e;
  let at = chunk.indexOf('\n.');
  if (at === -1) return lead ? Buffer.concat([DOT, chunk]) : chunk;
  const parts: Buffer[] = lead ? [DOT] : [];
  let from = 0;
  for (; at !== -1; at = chunk.indexOf('\n.', at + 1)) {
    parts.push(chunk.subarray(from, at + 1), DOT);
    from = at + 1;
  }
  parts.push(chunk.subarray(from));
  return Buffer.concat(parts);
}
