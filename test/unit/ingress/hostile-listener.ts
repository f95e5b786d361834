/**
 * Shared by the hostile-client tests: Tern's listener on 127.0.0.1 with hooks that record what
 * they saw, and a raw client that reads every reply line until the server closes or a deadline.
 */
import { connect, type Socket } from 'node:net';
import { DataStream, SmtpServer, type SmtpHooks, type SmtpServerOptions } from '../../../src/ingress/smtp-server.ts';

export interface Delivered { readonly body: Buffer; readonly refusal?: string }

export async function listener(t: { teardown(fn: () => unknown): void }, overrides: Partial<SmtpServerOptions> = {}, hooks: Partial<SmtpHooks> = {}): Promise<{ port: number; delivered: Delivered[]; server: SmtpServer }> {
  const delivered: Delivered[] = [];
  const server = new SmtpServer({ name: 'mx.test', banner: 'Tern', size: 100_000, maxRecipients: 3, maxClients: 50, socketTimeout: 10_000, authOffered: () => true, ...overrides }, {
    auth: (u, p) => (u === 'alice' && p === 's3cret' ? 'alice' : { code: 535, text: '5.7.8 Authentication credentials invalid' }),
    mailFrom: () => undefined,
    rcptTo: () => undefined,
    data: async (stream: DataStream) => {
      const parts: Buffer[] = [];
      for await (const c of stream) parts.push(c as Buffer);
      delivered.push({ body: Buffer.concat(parts), ...(stream.refusal ? { refusal: `${stream.refusal.code} ${stream.refusal.text}` } : {}) });
      return stream.refusal ?? '2.0.0 Ok: queued';
    },
    ...hooks,
  });
  await server.listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  return { port: (server.server.address() as { port: number }).port, delivered, server };
}

/** A raw session: every reply line as it comes, and whether the server has closed. */
export class Client {
  readonly lines: string[] = [];
  closed = false;
  readonly #socket: Socket;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.on('data', (c: Buffer) => this.lines.push(...c.toString('latin1').split('\r\n').filter(Boolean)));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  static async open(port: number): Promise<Client> {
    const socket = connect(port, '127.0.0.1');
    const client = new Client(socket);
    await new Promise((resolve) => socket.once('connect', resolve));
    await client.waitFor(() => client.lines.length > 0 || client.closed, 'the greeting');
    return client;
  }

  write(text: string | Buffer): void {
    if (!this.closed) this.#socket.write(text);
  }

  /** Send one line and wait for its (final) reply line. */
  async command(line: string): Promise<string> {
    const before = this.replies().length;
    this.write(`${line}\r\n`);
    await this.waitFor(() => this.replies().length > before || this.closed, `a reply to ${JSON.stringify(line.slice(0, 40))}`);
    return this.replies()[before] ?? '000 closed';
  }

  /** Final reply lines ("250 ..." not "250-..."). */
  replies(): string[] {
    return this.lines.filter((l) => /^\d{3} /.test(l));
  }

  codes(): string[] {
    return this.replies().map((l) => l.slice(0, 3));
  }

  async waitFor(condition: () => boolean, what: string, deadlineMs = 5_000): Promise<void> {
    const until = Date.now() + deadlineMs;
    while (!condition()) {
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}; got ${JSON.stringify(this.lines.slice(-5))}`);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  async untilClosed(deadlineMs = 5_000): Promise<void> {
    await this.waitFor(() => this.closed, 'the server to close the session', deadlineMs);
  }

  destroy(): void {
    this.#socket.destroy();
  }
}

/** A clock the test moves: the listener's per-address windows read it. */
export function manualClock(start = 1_000_000): { now: () => number; advance(ms: number): void } {
  let now = start;
  return { now: () => now, advance: (ms) => void (now += ms) };
}
