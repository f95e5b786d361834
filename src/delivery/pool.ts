import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import { PeakMeter } from '../lib/rate-meter.ts';
import type { SiteName } from '../model/ids.ts';
import type { AttemptOutcome, Route, TlsInfo } from '../model/outcome.ts';
import { tlsLevel, type Grant, type GrantRequest, type PathHandle, type PathLevels, type PathObservation, type PathSettings, type TlsLevel } from '../model/path.ts';
import { isSuccess, localReply, type SmtpReply } from '../model/reply.ts';
import type { TlsaRecord } from '../model/dane.ts';
import type { AppliedTlsPolicy, TlsFailureType } from '../model/tls-policy.ts';
import { holdOutcome, mergeOutcomes, observationsOf, splitJob } from './outcomes.ts';
import {
  HOLD_MAX_MS, HOLD_MIN_MS, MAX_ADDRESSES_PER_ATTEMPT, MAX_READY, MESSAGE_GRANT_BATCH, MIN_READY, PEAK_WINDOW_MS,
  READY_SECONDS, REFUSED_BACKOFF_MAX_MS, REFUSED_BACKOFF_MIN_MS, TARPIT_FACTOR, TARPIT_MIN_MS,
} from './limits.ts';
import { ConnectError, connectClient, connectFailure, type ClientConnection, type ConnectOptions, type Envelope } from './smtp-client.ts';

export interface DeliveryHost {
  readonly name: string;
  readonly addresses: readonly string[];
  /** DNSSEC vouched for the MX answer and this host's addresses: its TLSA records count. */
  readonly secure?: boolean;
  /** DANE (docs/tls.md): the host's usable TLSA records; empty: TLS required, unchecked. */
  readonly dane?: readonly TlsaRecord[];
}

export interface DeliveryJob {
  readonly site: SiteName;
  /** The recipients' domain: a domain with MX rules of its own has a path of its own. */
  readonly domain: string;
  readonly hosts: readonly DeliveryHost[];
  readonly envelope: Envelope;
  readonly openBody: () => Readable;
  /** The egress pool the mail asked for (X-Tern-Meta); the default pool when absent. */
  readonly pool?: string;
}

/** What a pool asks of shaping: its grants, and an ear for what receivers said. */
export interface PathPorts {
  acquire(requests: readonly GrantRequest[]): Grant[];
  release(path: string, connections: number): void;
  observe(path: PathHandle, observation: PathObservation, levels: PathLevels): void;
  /**
   * A session got past its greeting (+1) or ended (-1). Only shards need to say (ADR 0010): the
   * coordinator counts every shard's sessions and the path handle's `sessions()` reports them.
   */
  session?(path: string, delta: 1 | -1): void;
}

/** Settings every path shares: where to connect, who we are, the command and DATA deadlines. */
export interface PoolSettings {
  readonly port: number;
  readonly localName: string;
  /** The egress source's address, bound before connecting; undefined lets the kernel choose. */
  readonly localAddress?: string;
  readonly timeouts: { readonly command: number; readonly data: number };
  /** The CAs TLS level verify trusts (from delivery.tls_ca_file), built once; absent: Node's default store. */
  readonly tlsTrust?: SecureContext;
  /**
   * Shards whose pools share each path's limits (ADR 0010; 1 without). A pool counts on its share
   * of a path's rate and connections when it sizes its ready queue, so N pools together hold what
   * one would.
   */
  readonly shards?: number;
}

/** One connection opened: the path's TLS level, and the session it got (undefined: plaintext). */
export interface ConnectionReport { readonly level: TlsLevel; readonly tls: TlsInfo | undefined }

export interface PoolDeps {
  readonly clock: Clock;
  readonly log: Logger;
  readonly random?: () => number;
  /** Told of every connection opened, once (the TLS metric). */
  readonly onConnection?: (report: ConnectionReport) => void;
  /**
   * The path's ready queue ran down to half after it sent mail back as ready-queue-full: up to
   * `room` of the messages it held may come now. Returns how many will.
   */
  readonly onRoom?: (path: string, room: number) => number;
}

interface Pending {
  readonly job: DeliveryJob;
  readonly resolve: (o: AttemptOutcome) => void;
  /** Sent back once after the server hung up before answering: a second time is an attempt. */
  resent?: boolean;
}

type Opened = { kind: 'open'; conn: ClientConnection; route: Route } | { kind: 'failed'; reply: SmtpReply; route: Route };

/**
 * One path's connections: a FIFO of ready jobs and the workers the limiter grants leases for.
 * A worker opens a connection (MX in preference order, next MX on failure), sends jobs while
 * the path's settings allow (messages per connection, connections, a pause), then quits. The
 * settings are read afresh for every decision, so an adaptive change or a reload acts on
 * connections already open. What receivers say goes to shaping as it happens.
 */
export class PathPool {
  readonly path: PathHandle;
  readonly #settings: PoolSettings;
  readonly #ports: PathPorts;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #random: () => number;
  readonly #onConnection: ((report: ConnectionReport) => void) | undefined;
  readonly #onRoom: ((path: string, room: number) => number) | undefined;
  readonly #waiting: Pending[] = [];
  /** Jobs sent back as ready-queue-full and not yet asked for again. */
  #heldBack = 0;
  readonly #idle: ((p: Pending | undefined) => void)[] = [];
  readonly #open = new Set<ClientConnection>();
  /** Connections open at once, per second: the level a refused connection is judged against. */
  readonly #peak = new PeakMeter(PEAK_WINDOW_MS / 1000);
  /** How long a transaction takes here, smoothed; 0 before the first. */
  #serviceMs = 0;
  /** How long a connection takes to open (connect, greeting, EHLO, TLS), smoothed; 0 before the first. */
  #openMs = 0;
  /** Connections opened so far, to tell whether another opened while one waited. */
  #opened = 0;
  #workers = 0;
  #growTimer: Timer | undefined;
  #backoff = 0;
  #backoffUntil = 0;
  #credit = 0;
  #creditFor: PathSettings | undefined;
  #grantAt = 0;
  /** Every outcome's route names the path (and provider) it went by. */
  readonly #pathRoute: Route;
  #stopping = false;
  #aborted = false;
  /** Pools in other shards sharing this path's limits, this one included. */
  readonly #shards: number;

  constructor(path: PathHandle, settings: PoolSettings, ports: PathPorts, deps: PoolDeps) {
    this.path = path;
    this.#settings = settings;
    this.#ports = ports;
    this.#clock = deps.clock;
    this.#log = deps.log;
    this.#random = deps.random ?? Math.random;
    this.#onConnection = deps.onConnection;
    this.#onRoom = deps.onRoom;
    this.#shards = settings.shards ?? 1;
    this.#pathRoute = { path: path.key, ...(path.provider ? { provider: path.provider } : {}) };
  }

  get busy(): boolean { return this.#workers > 0 || this.#waiting.length > 0; }
  get connections(): number { return this.#open.size; }
  get depth(): number { return this.#waiting.length; }

  submit(job: DeliveryJob): Promise<AttemptOutcome> {
    const held = this.#held();
    if (held) return Promise.resolve(held);
    const settings = this.path.settings();
    if (job.envelope.recipients.length > settings.max_recipients_per_message) {
      const parts = splitJob(job, settings.max_recipients_per_message);
      return Promise.all(parts.map((p) => this.submit(p))).then((outcomes) => mergeOutcomes(outcomes, parts.map((p) => p.envelope.recipients.length)));
    }
    if (this.#waiting.length >= this.#readyCap(settings)) return Promise.resolve(this.#readyFull(settings));
    return new Promise<AttemptOutcome>((resolve) => {
      if (this.#dispatch({ job, resolve })) this.#grow();
    });
  }

  /**
   * Quit idle connections and refuse nothing: jobs in flight finish on their own, those already
   * waiting here included (a shard's first grant comes a moment after the job: ADR 0010), so a
   * connection still takes what waits and new ones open for it; none stays to wait for more.
   */
  stop(): void {
    this.#stopping = true;
    for (const wake of this.#idle.splice(0)) wake(undefined);
  }

  /** Force-close every connection (shutdown deadline passed); nothing new opens. */
  abort(): void {
    this.stop();
    this.#aborted = true;
    this.#growTimer?.cancel();
    for (const conn of this.#open) conn.close();
  }

  /** A pause or failure in force answers at once, for this job and any still waiting. */
  #held(): AttemptOutcome | undefined {
    const hold = this.path.hold();
    if (!hold) return undefined;
    const outcome = holdOutcome(hold, this.#pathRoute);
    for (const p of this.#waiting.splice(0)) p.resolve(outcome);
    return outcome;
  }

  /**
   * How many jobs may wait here: enough for every connection twice over and about
   * READY_SECONDS of what the path has been sending (its rate, when it has one). The rest wait
   * in the queue, so one slow path never fills the active window that every path shares.
   */
  #readyCap(settings: PathSettings): number {
    const share = 1 / this.#shards;
    const floor = Math.max(MIN_READY, 2 * settings.max_connections) * share;
    const rate = this.#throughput(settings);
    if (rate === undefined) return Math.ceil(MAX_READY * share);
    return Math.ceil(Math.min(MAX_READY * share, Math.max(floor, rate * READY_SECONDS)));
  }

  /**
   * Messages a second this pool can send now: its share of the path's rate when it has one, else
   * its open connections at the speed its transactions have been going; undefined before its first.
   */
  #throughput(settings: PathSettings): number | undefined {
    const rate = settings.max_message_rate;
    if (rate) return (rate.count * 1000) / rate.perMs / this.#shards;
    if (this.#serviceMs === 0) return undefined;
    return (Math.max(1, this.#open.size) * 1000) / Math.max(1, this.#serviceMs);
  }

  /** Held back until about half the ready jobs have gone, so the pool is refilled before it runs dry. */
  #readyFull(settings: PathSettings): AttemptOutcome {
    this.#heldBack++;
    const rate = this.#throughput(settings) ?? 0;
    const excess = this.#waiting.length - this.#readyCap(settings) / 2;
    const drain = rate > 0 ? (excess / rate) * 1000 : HOLD_MAX_MS;
    const wait = Math.min(HOLD_MAX_MS, Math.max(HOLD_MIN_MS, drain)) * (0.8 + 0.4 * this.#random());
    const reply = localReply(451, '4.4.5', `path busy: ${this.#waiting.length} messages already waiting for ${this.path.site}`, 'QUEUE');
    return { kind: 'held', route: this.#pathRoute, reply, until: Math.round(this.#clock.now() + wait), reason: 'ready-queue-full', ...(rate > 0 ? { drainPerSecond: rate } : {}) };
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

  /**
   * One connection per waiting job, as many as the limiter grants; ask again when it says. While
   * backing off after a refused connection, no more than those already working (but never none).
   */
  #grow(): void {
    if (this.#aborted || this.#growTimer) return;
    if (this.#workers > 0 && this.#clock.now() < this.#backoffUntil) return this.#delayGrowth(this.#backoffUntil);
    // Asked even when the limit is reached: a refusal tells shaping the limit is holding mail back.
    const want = this.#waiting.length;
    if (want <= 0) return;
    const [grant] = this.#ports.acquire([{ path: this.path.key, kind: 'connection', count: want }]);
    for (let i = 0; i < (grant?.granted ?? 0); i++) this.#spawnWorker();
    if (grant?.retryAt !== undefined && grant.granted < want) this.#delayGrowth(grant.retryAt);
  }

  #delayGrowth(at: number): void {
    this.#growTimer?.cancel();
    this.#growTimer = this.#clock.at(at, () => {
      this.#growTimer = undefined;
      this.#grow();
    });
  }

  #spawnWorker(): void {
    this.#workers++;
    void this.#work().finally(() => {
      this.#workers--;
      this.#ports.release(this.path.key, 1);
      // A worker that quit (messages per connection, a lower limit) may leave jobs behind.
      if (this.#waiting.length > 0) this.#grow();
    });
  }

  async #work(): Promise<void> {
    const first = this.#next();
    if (!first) return;
    const startedAt = this.#clock.now();
    this.#peak.note(startedAt, this.#open.size);
    // What the path's sessions were in every shard as this one began: one loop's peak covers its own.
    const before = { opened: this.#openedAnywhere(), open: this.#openAnywhere() };
    const opened = await this.#connect(first.job.hosts, startedAt);
    if (opened.kind === 'failed') return this.#connectFailed(first, opened, startedAt, before);
    const { conn, route } = opened;
    const now = this.#clock.now();
    if (now >= this.#backoffUntil) this.#backoff = 0;
    this.#opened++;
    this.#openMs = this.#openMs === 0 ? now - startedAt : 0.8 * this.#openMs + 0.2 * (now - startedAt);
    this.#open.add(conn);
    this.#peak.note(this.#clock.now(), this.#open.size);
    this.#ports.session?.(this.path.key, 1);
    try {
      let pending: Pending | undefined = first;
      for (let sent = 0; pending; ) {
        const healthy = await this.#sendOne(conn, route, pending, sent);
        sent++;
        if (!healthy || !this.#mayContinue(sent)) break;
        const ready = this.#next();
        pending = ready ?? (await this.#waitIdle());
        if (pending && conn.closed) {
          // The server hung up: the job goes to another idle connection or a fresh one. Right
          // after a message (not after an idle wait) that is its per-connection limit speaking.
          if (ready) this.#ports.observe(this.path, { kind: 'event', event: 'dropped', detail: `the server closed the connection after ${sent} messages` }, { connections: this.#open.size, sentOnConnection: sent });
          this.#dispatch(pending, { sentBack: true });
          break;
        }
      }
    } finally {
      this.#open.delete(conn);
      this.#ports.session?.(this.path.key, -1);
      // The lease is given back only once the receiver has seen the session end: a new
      // connection opened sooner would be one too many to a receiver counting sessions.
      await conn.quit();
    }
  }

  /**
   * The next ready job. Held mail was placed behind the rest by the pace of the moment; once the
   * ready queue is down to half, the path asks for it instead of running dry before it returns.
   */
  #next(): Pending | undefined {
    const next = this.#waiting.shift();
    if (this.#heldBack === 0 || !this.#onRoom) return next;
    const cap = this.#readyCap(this.path.settings());
    if (this.#waiting.length > cap / 2) return next;
    const room = Math.min(this.#heldBack, cap - this.#waiting.length);
    const coming = this.#onRoom(this.path.key, room);
    this.#heldBack = coming < room ? 0 : this.#heldBack - room;
    return next;
  }

  /** After each message: the connection's quota, the path's connection limit, a pause, a shutdown. */
  #mayContinue(sent: number): boolean {
    const settings = this.path.settings();
    if (this.#aborted || sent >= settings.max_messages_per_connection || this.#workers > settings.max_connections) return false;
    return this.#held() === undefined;
  }

  /**
   * No MX answered. If the path has other connections, open or opening, or had one working while
   * this one tried, the trouble is this connection's (a receiver refusing sessions above its
   * limit): the job goes back to wait for another. Otherwise the path is unreachable right now,
   * and everything waiting shares the verdict instead of each job timing out against the same
   * dead hosts.
   */
  #connectFailed(first: Pending, opened: Extract<Opened, { kind: 'failed' }>, startedAt: number, before: { opened: number; open: number }): void {
    const outcome: AttemptOutcome = { kind: 'site-unreachable', route: { ...opened.route, ...this.#pathRoute }, reply: opened.reply };
    // Whether the receiver greeted any of our sessions, here or in another shard, while this one waited.
    const greetedMeanwhile = this.#peak.maxSince(startedAt, this.#clock.now()) > 0 || before.open > 0 || this.#openedAnywhere() > before.opened || this.#openAnywhere() > 0 || this.#greetedLately();
    if (this.#workers <= 1 && !greetedMeanwhile) {
      first.resolve(outcome);
      for (const p of this.#waiting.splice(0)) p.resolve(outcome);
      return;
    }
    // Sent back once; a job whose second connection fails too has had its attempt, unless the
    // receiver greeted other sessions of ours meanwhile (in a shard, perhaps only in another one):
    // then this failure was one session too many (a tarpit), not the receiver's, and the job waits
    // for a connection that works, as one loop's waits for a working one to take it.
    if (first.resent && !greetedMeanwhile) first.resolve(outcome);
    else {
      first.resent = true;
      this.#dispatch(first, { sentBack: true });
    }
    // Refusals of one burst count once: the back-off doubles only for a refusal after it ended.
    const now = this.#clock.now();
    if (now >= this.#backoffUntil) {
      this.#backoff = Math.min(REFUSED_BACKOFF_MAX_MS, Math.max(REFUSED_BACKOFF_MIN_MS, this.#backoff * 2));
      this.#backoffUntil = now + this.#backoff;
    }
  }

  async #sendOne(conn: ClientConnection, route: Route, pending: Pending, sent: number): Promise<boolean> {
    // A path without a rate (most) needs no grant, and no await for one.
    if (!this.#messageGranted()) await this.#waitForMessageGrant();
    const { job } = pending;
    const deadline = this.#settings.timeouts.data + this.#settings.timeouts.command;
    // Watchdog: each reply has its own deadline; this bounds the whole transaction (a thousand RCPT replies, a stalled body).
    const started = this.#clock.now();
    const timer = this.#clock.at(started + deadline, () => conn.close());
    const result = await conn.send(job.envelope, job.openBody()).finally(() => timer.cancel());
    const took = this.#clock.now() - started;
    this.#serviceMs = this.#serviceMs === 0 ? took : 0.8 * this.#serviceMs + 0.2 * took;
    const levels = { connections: this.#open.size, sentOnConnection: sent };
    if (result.kind === 'message-refused' && this.#droppedBeforeAnswer(result.reply, sent, pending)) {
      this.#ports.observe(this.path, { kind: 'event', event: 'dropped', detail: `the server closed the connection after ${sent} messages` }, levels);
      this.#dispatch(pending, { sentBack: true });
      return false;
    }
    const outcome: AttemptOutcome = result.kind === 'transaction'
      ? { kind: 'transaction', route, replies: result.replies }
      : { kind: 'message-refused', route, reply: result.reply };
    for (const observation of observationsOf(outcome, job.envelope.recipients.length)) this.#ports.observe(this.path, observation, levels);
    pending.resolve(outcome);
    if (!result.healthy) return false;
    return result.kind === 'transaction' && result.replies.every(isSuccess) ? true : conn.reset();
  }

  /**
   * A reused connection lost before MAIL was answered: the server hung up after its last message
   * (a per-connection limit it does not announce). Nothing reached it, so the job goes again on
   * another connection, without an attempt, as often as that happens: each time costs the
   * receiver nothing, and a fresh connection (sent 0) is not excused. With shards a job can meet
   * a second reused connection at its limit before the adaptive rule has lowered it.
   */
  #droppedBeforeAnswer(reply: SmtpReply, sent: number, pending: Pending): boolean {
    if (sent === 0 || reply.origin !== 'local' || reply.command !== 'MAIL') return false;
    pending.resent = true;
    return true;
  }

  /**
   * A message grant when the path has a rate (always, when it has none): from the credit a batch
   * left, else a new batch from the limiter. False: none now; `#grantAt` says when to ask again.
   */
  #messageGranted(): boolean {
    const settings = this.path.settings();
    if (!settings.max_message_rate) return true;
    if (this.#creditFor !== settings) {
      this.#credit = 0;
      this.#creditFor = settings;
    }
    if (this.#credit > 0) {
      this.#credit--;
      return true;
    }
    const count = Math.min(MESSAGE_GRANT_BATCH, this.#waiting.length + 1);
    const [grant] = this.#ports.acquire([{ path: this.path.key, kind: 'message', count }]);
    if (grant && grant.granted > 0) {
      this.#credit = grant.granted - 1;
      return true;
    }
    this.#grantAt = grant?.retryAt ?? this.#clock.now() + HOLD_MIN_MS;
    return false;
  }

  async #waitForMessageGrant(): Promise<void> {
    do await new Promise<void>((resolve) => this.#clock.at(this.#grantAt, resolve));
    while (!this.#messageGranted());
  }

  #waitIdle(): Promise<Pending | undefined> {
    if (this.#stopping) return Promise.resolve(undefined);
    return new Promise<Pending | undefined>((resolve) => {
      const wake = (p: Pending | undefined): void => {
        timer.cancel();
        resolve(p);
      };
      const timer = this.#clock.at(this.#clock.now() + this.path.settings().idle_timeout, () => {
        const i = this.#idle.indexOf(wake);
        if (i !== -1) this.#idle.splice(i, 1);
        resolve(undefined);
      });
      this.#idle.push(wake);
    });
  }

  async #connect(hosts: readonly DeliveryHost[], startedAt: number): Promise<Opened> {
    let last: Opened | undefined;
    let tried = 0;
    const settings = this.path.settings();
    const family = this.#settings.localAddress ? isIP(this.#settings.localAddress) : 0;
    for (const host of hosts) {
      // A source binds one family: an IPv4 source cannot reach an IPv6 address, nor the reverse.
      for (const address of family ? host.addresses.filter((a) => isIP(a) === family) : host.addresses) {
        if (tried++ >= MAX_ADDRESSES_PER_ATTEMPT) break;
        const result = await this.#connectOne(host.name, address, settings, tlsLevel(settings.tls), startedAt, undefined, host.dane);
        if (result.kind === 'open') return result;
        this.#log.info({ site: this.path.site, path: this.path.key, mx: host.name, remote_ip: address, reply: result.reply.text }, 'connection failed, trying next MX');
        last = result;
      }
    }
    const none = family ? `no IPv${family} address of an MX host for source ${this.#settings.localAddress}` : 'no MX host address to try';
    return last ?? { kind: 'failed', route: {}, reply: localReply(451, '4.4.4', none, 'CONNECT') };
  }

  /**
   * `level` is the path's; `tls` what this attempt asks for: the same, or none for the plaintext
   * retry that level may allows after a failed handshake.
   */
  async #connectOne(mx: string, address: string, settings: PathSettings, level: TlsLevel, startedAt: number, tls: TlsLevel = level, dane?: readonly TlsaRecord[]): Promise<Opened> {
    // What the attempt reports: DANE for a host with TLSA records, else the path's level.
    const policy = (result: 'success' | 'failure', failure?: TlsFailureType): AppliedTlsPolicy =>
      dane ? { type: 'dane', result, ...(failure ? { failure } : {}) } : { type: level };
    const options: ConnectOptions = {
      host: address,
      servername: mx,
      port: this.#settings.port,
      localName: this.#settings.localName,
      ...(this.#settings.localAddress ? { localAddress: this.#settings.localAddress } : {}),
      tls,
      ...(dane ? { dane } : {}),
      ...(this.#settings.tlsTrust ? { trust: this.#settings.tlsTrust } : {}),
      timeouts: { connect: settings.connect_timeout, greeting: settings.greeting_timeout, command: this.#settings.timeouts.command, data: this.#settings.timeouts.data },
    };
    const watch = this.#watchForTarpit();
    try {
      const conn = await connectClient({ ...options, giveUpGreeting: watch.signal });
      this.#onConnection?.({ level, tls: conn.tls });
      return { kind: 'open', conn, route: { mx, remoteIp: conn.remoteIp, ...(conn.localIp ? { sourceIp: conn.localIp } : {}), ...(conn.tls ? { tls: conn.tls } : {}), tlsPolicy: policy('success'), ...this.#pathRoute } };
    } catch (err) {
      // Level may only: a failed handshake falls back to plaintext, as Postfix does at "may"
      // (the server offered STARTTLS and could not do it). encrypt and verify never do.
      if (err instanceof ConnectError && err.code === 'ETLS' && tls === 'may' && !dane) {
        this.#log.info({ site: this.path.site, path: this.path.key, mx, remote_ip: address, reply: err.reply.text }, 'TLS handshake failed at level may: retrying in plaintext');
        return this.#connectOne(mx, address, settings, level, startedAt, 'none');
      }
      this.#observeConnectFailure(err, startedAt);
      const tlsFailure = err instanceof ConnectError ? err.tlsFailure : undefined;
      return { kind: 'failed', route: { mx, remoteIp: address, tlsPolicy: policy('failure', tlsFailure), ...(tlsFailure ? { tlsFailure } : {}) }, reply: connectFailure(err) };
    } finally {
      watch.timer?.cancel();
    }
  }

  /**
   * Aborts a connection attempt that waits far longer than its path's others take to open, if
   * one opened meanwhile (or is open), here or in another shard. Checked at TARPIT_MIN_MS, then
   * again once the wait has reached TARPIT_FACTOR times the path's opening time (if known here).
   */
  #watchForTarpit(): { signal: AbortSignal; timer: Timer | undefined } {
    const controller = new AbortController();
    const startedAt = this.#clock.now();
    const openedBefore = this.#openedAnywhere();
    const watch: { signal: AbortSignal; timer: Timer | undefined } = { signal: controller.signal, timer: undefined };
    const check = (): void => {
      // How long opening takes is known once one opened here; before that, in a shard, that
      // others are open on the path elsewhere is enough after TARPIT_MIN_MS. One loop's pool
      // with none open yet cannot tell a tarpit from a slow receiver, and waits.
      if (this.#openMs === 0 && this.#openAnywhere() === 0) return;
      const due = startedAt + Math.max(TARPIT_MIN_MS, TARPIT_FACTOR * this.#openMs);
      if (this.#clock.now() < due) {
        watch.timer = this.#clock.at(due, check);
        return;
      }
      if (this.#openedAnywhere() > openedBefore || this.#openAnywhere() > 0) controller.abort();
    };
    watch.timer = this.#clock.at(startedAt + TARPIT_MIN_MS, check);
    return watch;
  }

  /** Sessions opened on the path so far: by every shard where the coordinator counts them, else by this pool. */
  #openedAnywhere(): number {
    return this.path.sessions?.()?.opened ?? this.#opened;
  }

  /**
   * In a shard: whether any shard's session on the path got past its greeting within the last
   * PEAK_WINDOW_MS. Sessions stalled in other shards can fill a tarpit's slots after every greeted
   * one has ended, so "none greeted while this one waited" does not make the receiver unreachable.
   */
  #greetedLately(): boolean {
    const sessions = this.path.sessions?.();
    return sessions !== undefined && sessions.opened > 0 && this.#clock.now() - sessions.openedAt < PEAK_WINDOW_MS;
  }

  /** Sessions open on the path now, in this shard or (as last heard) any other. */
  #openAnywhere(): number {
    return Math.max(this.#open.size, this.path.sessions?.()?.open ?? 0);
  }

  /**
   * A refusal in words (greeting, EHLO) or a failure without any (timeout, refused, TLS). The
   * level is the most connections the receiver had open from us in the last minute, or while this
   * one tried: those it was willing to take (they may have finished and gone by now).
   */
  #observeConnectFailure(err: unknown, startedAt: number): void {
    const now = this.#clock.now();
    const peakFrom = Math.min(startedAt, now - PEAK_WINDOW_MS);
    const levels = { connections: this.#peak.maxSince(peakFrom, now), sentOnConnection: 0, peakFrom };
    if (!(err instanceof ConnectError)) return;
    if (err.reply.origin === 'remote') this.#ports.observe(this.path, { kind: 'reply', reply: err.reply, recipients: 0 }, levels);
    else if (err.event) this.#ports.observe(this.path, { kind: 'event', event: err.event, detail: err.reply.text }, levels);
  }
}
