import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import type { Rate } from '../lib/units.ts';
import type { SiteName } from '../model/ids.ts';
import type { AttemptOutcome, Route } from '../model/outcome.ts';
import { isSuccess, localReply, type SmtpReply } from '../model/reply.ts';
import { TokenBucket } from '../lib/token-bucket.ts';
import { connectClient, connectFailure, type ClientConnection, type ConnectOptions, type Envelope } from './smtp-client.ts';

export interface DeliveryHost { readonly name: string; readonly addresses: readonly string[] }

export interface DeliveryJob {
  readonly site: SiteName;
  readonly hosts: readonly DeliveryHost[];
  readonly envelope: Envelope;
  readonly openBody: () => Readable;
}

export interface PoolLimits {
  readonly max_connections: number;
  readonly max_messages_per_connection: number;
  readonly max_message_rate?: Rate | undefined;
  readonly max_connection_rate?: Rate | undefined;
}

export interface PoolSettings {
  readonly port: number;
  readonly localName: string;
  readonly tls: 'opportunistic' | 'disabled';
  readonly timeouts: { connect: number; greeting: number; command: number; data: number; idle: number };
  readonly limits: PoolLimits;
}

interface Pending { readonly job: DeliveryJob; readonly resolve: (o: AttemptOutcome) => void }

type Opened = { kind: 'open'; conn: ClientConnection; route: Route } | { kind: 'failed'; reply: SmtpReply; route: Route };

// Postfix tries at most five MX addresses per attempt (smtp_mx_address_limit); so do we.
const MAX_ADDRESSES_PER_ATTEMPT = 5;

/**
 * One site's connections: a FIFO of waiting jobs and up to max_connections workers, each of
 * which opens a connection (MX in preference order, next MX on failure), sends jobs until
 * max_messages_per_connection or the queue stays empty for `idle`, then quits.
 */
export class SitePool {
  readonly site: SiteName;
  readonly #settings: PoolSettings;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #waiting: Pending[] = [];
  readonly #idle: ((p: Pending | undefined) => void)[] = [];
  readonly #open = new Set<ClientConnection>();
  readonly #messageRate: TokenBucket | undefined;
  readonly #connectionRate: TokenBucket | undefined;
  #workers = 0;
  #stopping = false;

  constructor(site: SiteName, settings: PoolSettings, clock: Clock, log: Logger) {
    this.site = site;
    this.#settings = settings;
    this.#clock = clock;
    this.#log = log;
    const now = clock.now();
    this.#messageRate = settings.limits.max_message_rate ? new TokenBucket(settings.limits.max_message_rate, now) : undefined;
    this.#connectionRate = settings.limits.max_connection_rate ? new TokenBucket(settings.limits.max_connection_rate, now) : undefined;
  }

  get busy(): boolean { return this.#workers > 0 || this.#waiting.length > 0; }
  get connections(): number { return this.#open.size; }
  get depth(): number { return this.#waiting.length; }

  submit(job: DeliveryJob): Promise<AttemptOutcome> {
    return new Promise<AttemptOutcome>((resolve) => {
      const queued = this.#dispatch({ job, resolve });
      if (queued && this.#workers < this.#settings.limits.max_connections) this.#spawnWorker();
    });
  }

  /**
   * To an idle connection if there is one, else into the queue (at its front for a job sent
   * back); true when it was queued.
   */
  #dispatch(pending: Pending, { sentBack = false } = {}): boolean {
    const idleWorker = this.#idle.shift();
    if (idleWorker) {
      idleWorker(pending);
      return false;
    }
    if (sentBack) this.#waiting.unshift(pending);
    else this.#waiting.push(pending);
    return true;
  }

  /** Quit idle connections and refuse nothing: jobs in flight finish on their own. */
  stop(): void {
    this.#stopping = true;
    for (const wake of this.#idle.splice(0)) wake(undefined);
  }

  /** Force-close every connection (shutdown deadline passed). */
  abort(): void {
    this.stop();
    for (const conn of this.#open) conn.close();
  }

  #spawnWorker(): void {
    this.#workers++;
    void this.#work().finally(() => {
      this.#workers--;
      // A worker that hit max_messages_per_connection leaves jobs behind: reconnect for them.
      if (this.#waiting.length > 0 && this.#workers < this.#settings.limits.max_connections) this.#spawnWorker();
    });
  }

  async #work(): Promise<void> {
    const first = this.#waiting.shift();
    if (!first) return;
    await this.#pace(this.#connectionRate);
    const opened = await this.#connect(first.job.hosts);
    if (opened.kind === 'failed') {
      // The whole site is unreachable right now: everything waiting for it shares the verdict
      // instead of each job timing out against the same dead hosts.
      const outcome: AttemptOutcome = { kind: 'site-unreachable', route: opened.route, reply: opened.reply };
      first.resolve(outcome);
      for (const p of this.#waiting.splice(0)) p.resolve(outcome);
      return;
    }
    const { conn, route } = opened;
    this.#open.add(conn);
    try {
      let pending: Pending | undefined = first;
      for (let sent = 0; pending; ) {
        const healthy = await this.#sendOne(conn, route, pending);
        sent++;
        if (!healthy || sent >= this.#settings.limits.max_messages_per_connection || this.#stopping) break;
        pending = this.#waiting.shift() ?? (await this.#waitIdle());
        if (pending && conn.closed) {
          // The server hung up while we were idle: the job goes back, to another idle connection
          // or a fresh one.
          this.#dispatch(pending, { sentBack: true });
          break;
        }
      }
    } finally {
      this.#open.delete(conn);
      if (!conn.closed) conn.quit();
    }
  }

  async #sendOne(conn: ClientConnection, route: Route, pending: Pending): Promise<boolean> {
    await this.#pace(this.#messageRate);
    const { job } = pending;
    const deadline = this.#settings.timeouts.data + this.#settings.timeouts.command;
    // Watchdog: socket timeouts cover inactivity; this bounds a peer that trickles bytes forever.
    const timer = this.#clock.at(this.#clock.now() + deadline, () => conn.close());
    const result = await conn.send(job.envelope, job.openBody()).finally(() => timer.cancel());
    if (result.kind === 'transaction') {
      pending.resolve({ kind: 'transaction', route, replies: result.replies });
      const allOk = result.replies.every(isSuccess);
      return result.healthy && (allOk || (await conn.reset()));
    }
    pending.resolve({ kind: 'message-refused', route, reply: result.reply });
    return result.healthy && (await conn.reset());
  }

  #waitIdle(): Promise<Pending | undefined> {
    if (this.#stopping) return Promise.resolve(undefined);
    return new Promise<Pending | undefined>((resolve) => {
      const wake = (p: Pending | undefined): void => {
        timer.cancel();
        resolve(p);
      };
      const timer = this.#clock.at(this.#clock.now() + this.#settings.timeouts.idle, () => {
        const i = this.#idle.indexOf(wake);
        if (i !== -1) this.#idle.splice(i, 1);
        resolve(undefined);
      });
      this.#idle.push(wake);
    });
  }

  async #pace(bucket: TokenBucket | undefined): Promise<void> {
    if (!bucket) return;
    for (let wait = bucket.take(this.#clock.now()); wait > 0; wait = bucket.take(this.#clock.now())) {
      await new Promise<void>((resolve) => this.#clock.at(this.#clock.now() + wait, resolve));
    }
  }

  async #connect(hosts: readonly DeliveryHost[]): Promise<Opened> {
    let last: Opened | undefined;
    let tried = 0;
    for (const host of hosts) {
      for (const address of host.addresses) {
        if (tried++ >= MAX_ADDRESSES_PER_ATTEMPT) break;
        const route: Route = { mx: host.name, remoteIp: address };
        const result = await this.#connectOne(host.name, address, this.#settings.tls);
        if (result.kind === 'open') return result;
        this.#log.info({ site: this.site, mx: host.name, remote_ip: address, reply: result.reply.text }, 'connection failed, trying next MX');
        last = { ...result, route };
      }
    }
    return last ?? { kind: 'failed', route: {}, reply: localReply(451, '4.4.4', 'no MX host address to try', 'CONNECT') };
  }

  async #connectOne(mx: string, address: string, tls: 'opportunistic' | 'disabled'): Promise<Opened> {
    const options: ConnectOptions = {
      host: address,
      servername: mx,
      port: this.#settings.port,
      localName: this.#settings.localName,
      tls,
      timeouts: this.#settings.timeouts,
    };
    try {
      const conn = await connectClient(options);
      return { kind: 'open', conn, route: { mx, remoteIp: conn.remoteIp, ...(conn.localIp ? { sourceIp: conn.localIp } : {}), tls: conn.secure } };
    } catch (err) {
      const e = err as { code?: string };
      // Opportunistic TLS: a failed handshake falls back to plaintext, as Postfix does at "may".
      if (e.code === 'ETLS' && tls === 'opportunistic') return this.#connectOne(mx, address, 'disabled');
      return { kind: 'failed', route: { mx, remoteIp: address }, reply: connectFailure(err) };
    }
  }
}
