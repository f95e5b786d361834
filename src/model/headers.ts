/** One header field with its continuation lines (CRLF-joined), and its lower-cased name. */
export interface HeaderField { readonly name: string; readonly raw: string }

const FIELD_NAME = /^[!-9;-~]+:/;

/**
 * Split a header block into fields. The first line that is neither a field nor a continuation
 * ends the header block; it and the rest are returned as body lines (as Postfix's cleanup does).
 */
export function splitHeaderFields(block: string): { fields: HeaderField[]; bodyLines: string[] } {
  const fields: HeaderField[] = [];
  const lines = block.split(/\r?\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i] as string;
    const last = fields[fields.length - 1];
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      fields[fields.length - 1] = { name: last.name, raw: `${last.raw}\r\n${line}` };
    } else if (FIELD_NAME.test(line)) {
      fields.push({ name: line.slice(0, line.indexOf(':')).toLowerCase(), raw: line });
    } else {
      return { fields, bodyLines: lines.slice(i) };
    }
  }
  return { fields, bodyLines: [] };
}
