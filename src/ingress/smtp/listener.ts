/**
 * The listening socket: admits connections (max_clients, and per client address the
 * connection count and rate), gives each a Connection, and closes them all on shutdown.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, type SecureContext } from 'node:tls';
import { cutOffLater, plainAddress } from '../../lib/net.ts';
import { ClientTracker } from './anvil.ts';
import { Connection } from './connection.ts';
import { CUT_OFF_MS, DEFAULT_LIMITS, type SmtpLimits } from './limits.ts';
import { REPLIES, render, type ReplyEntry } from './replies.ts';
import type { SmtpHooks, SmtpServerOptions } from './session.ts';

export class SmtpServer {
  readonly #options: SmtpServerOptions;
  readonly #limits: SmtpLimits;
  readonly #hooks: SmtpHooks;
  readonly #server: Server;
  readonly #connections = new Set<Connection>();
  readonly #secureContext: SecureContext | undefined;
  readonly #clients: ClientTracker;
  #closing = false;

  constructor(options: SmtpServerOptions, hooks: SmtpHooks) {
    this.#options = options;
    this.#limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.#hooks = hooks;
    this.#secureContext = options.tls ? createSecureContext({ key: options.tls.key, cert: options.tls.cert }) : undefined;
    this.#clients = new ClientTracker(this.#limits, options.now ?? Date.now, options.exemptFromClientLimits ?? (() => false));
    this.#server = createServer((socket) => this.#accept(socket));
  }

  get server(): Server { return this.#server; }

  /** SMTP sessions open now. */
  get sessions(): number { return this.#connections.size; }

  listen(port: number, host: string, reusePort = false): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen({ port, host, ...(reusePort ? { reusePort } : {}) }, () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }

  /** No new connections; idle ones are told 421, busy ones after their transaction. */
  close(): Promise<void> {
    this.#closing = true;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const c of this.#connections) c.shutdown();
    return closed;
  }

  #accept(socket: Socket): void {
    socket.on('error', () => undefined);
    const address = plainAddress(socket.remoteAddress ?? '');
    if (this.#connections.size >= this.#options.maxClients || this.#closing) return this.#turnAway(socket, REPLIES.tooManyClients, address);
    const refused = this.#clients.admit(address);
    if (refused) return this.#turnAway(socket, refused, address);
    const connection: Connection = new Connection(socket, {
      options: this.#options,
      limits: this.#limits,
      hooks: this.#hooks,
      secureContext: this.#secureContext,
      clients: this.#clients,
      onClosed: () => {
        this.#connections.delete(connection);
        this.#clients.release(address);
      },
    });
    this.#connections.add(connection);
  }

  #turnAway(socket: Socket, entry: ReplyEntry, address: string): void {
    const reply = render(entry, { name: this.#options.name });
    this.#options.onRefusal?.(reply, address);
    socket.end(`${reply.code} ${reply.text}\r\n`);
    cutOffLater(socket, CUT_OFF_MS);
  }
}
