import { connect, type Socket } from 'node:net';

/**
 * A deliberately dumb SMTP client for tests: sends exactly the bytes it is given and collects
 * each reply, so tests can speak bad SMTP (bare LF, malformed commands) on purpose.
 */
export class RawSmtp {
  readonly #socket: Socket;
  #buffer = '';
  #waiters: ((reply: string) => void)[] = [];
  #replies: string[] = [];
  #closed = false;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    // A server that dies mid-session answers every pending and later command with this.
    const closed = (): void => {
      this.#closed = true;
      for (const waiter of this.#waiters.splice(0)) waiter('000 connection closed');
    };
    socket.on('close', closed);
    socket.on('error', closed);
    socket.on('data', (chunk: string) => {
      this.#buffer += chunk;
      for (;;) {
        const m = /^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/.exec(this.#buffer);
        if (!m) break;
        this.#buffer = this.#buffer.slice(m[0].length);
        const reply = m[0].trimEnd();
        const waiter = this.#waiters.shift();
        if (waiter) waiter(reply);
        else this.#replies.push(reply);
      }
    });
  }

  static async open(port: number, host = '127.0.0.1'): Promise<{ client: RawSmtp; greeting: string }> {
    const socket = connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new RawSmtp(socket);
    return { client, greeting: await client.reply() };
  }

  reply(): Promise<string> {
    const ready = this.#replies.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.#closed) return Promise.resolve('000 connection closed');
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  async command(line: string): Promise<string> {
    if (!this.#closed) this.#socket.write(`${line}\r\n`);
    return this.reply();
  }

  /** Send raw bytes (e.g. a message body ending in "\r\n.\r\n") and read one reply. */
  async data(raw: string | Buffer): Promise<string> {
    if (!this.#closed) this.#socket.write(raw);
    return this.reply();
  }

  close(): void {
    this.#socket.end('QUIT\r\n');
  }
}

export function message(opts: { from?: string; to?: string; subject?: string; headers?: string[]; body?: string } = {}): string {
  const headers = [
    `From: ${opts.from ?? 'sender@campaign.test'}`,
    `To: ${opts.to ?? 'rcpt@a.test'}`,
    `Subject: ${opts.subject ?? 'hello'}`,
    ...(opts.headers ?? []),
  ];
  return `${headers.join('\r\n')}\r\n\r\n${opts.body ?? 'Hello world.\r\n'}`;
}

/** One whole transaction; returns the reply to the final dot. */
export async function sendMail(port: number, from: string, to: readonly string[], body: string): Promise<string> {
  const { client } = await RawSmtp.open(port);
  try {
    await client.command('EHLO client.test');
    const mail = await client.command(`MAIL FROM:<${from}>`);
    if (!mail.startsWith('250')) return mail;
    for (const r of to) {
      const reply = await client.command(`RCPT TO:<${r}>`);
      if (!reply.startsWith('250')) return reply;
    }
    const go = await client.command('DATA');
    if (!go.startsWith('354')) return go;
    const stuffed = body.replace(/^\./gm, '..');
    return await client.data(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`);
  } finally {
    client.close();
  }
}

type Truthy<T> = Exclude<T, false | 0 | '' | null | undefined>;

/** Poll until probe() returns something truthy, and return it. */
export async function until<T>(probe: () => T | Promise<T>, timeoutMs = 10_000, what = 'condition'): Promise<Truthy<T>> {
  const start = Date.now();
  for (;;) {
    const value = await probe();
    if (value) return value as Truthy<T>;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
