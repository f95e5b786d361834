/** The parts of libmime (nodemailer's MIME library, a dependency of mailauth) Tern uses. */
declare module 'libmime' {
  const libmime: {
    decodeWords(text: string): string;
    parseHeaderValue(value: string): { value: string; params: Record<string, string> };
  };
  export default libmime;
}

declare module 'libmime/lib/charset.js' {
  const charset: { decode(buf: Buffer, fromCharset: string): string };
  export default charset;
}

declare module 'libqp' {
  const libqp: { decode(text: string): Buffer };
  export default libqp;
}
