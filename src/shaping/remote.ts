import type { Clock, Timer } from '../lib/clock.ts';
import { cappedIn, type CappedSources, type WarmupPort } from '../model/egress.ts';
import type { SiteName } from '../model/ids.ts';
import type { Grant, GrantRequest, PathHandle, PathHold, PathLevels, PathObservation, PathSessions, PathSettings } from '../model/path.ts';
import type { SessionTally } from './sessions.ts';
import type { Shaper } from './shaper.ts';

/**
 * The shaper across threads (ADR 0010): one coordinator owns the rules, the adaptive effects and
 * the limiter; each delivery shard holds a `RemoteShaping` that looks like the shaper to its
 * pools. Paths are resolved once per (site, domain) and their settings pushed to the shards on
 * every change, so `settings()` stays a synchronous read. Grants come from credit the shard
 * asked for in advance; asking is a message, never a wait, so a pool told "not yet" asks again a
 * moment later and finds the answer. Credit a shard does not use goes back, so the limits hold
 * exactly across shards: leases in use plus leases held as credit never exceed max_connections,
 * and message grants all come out of the coordinator's one bucket. Sessions past the greeting are
 * counted in the coordinator too (sessions.ts) and pushed back, so a pool judges a tarpit and an
 * `observed` cut by the path's sessions in every shard, as one loop's pool does by its own.
 */

/** What the protocol uses of a MessagePort, on either side (a worker's parentPort, a MessageChannel's ports). */
export interface Channel {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off?(event: 'message', listener: (message: unknown) => void): unknown;
}

interface Identity { readonly key: string; readonly site: SiteName; readonly source: string; readonly domain: string | undefined; readonly provider: string | undefined }
interface Snapshot { readonly settings: PathSettings; readonly hold: PathHold | undefined }

type ToCoordinator =
  | { readonly t: 'path'; readonly id: number; readonly site: SiteName; readonly mx: readonly string[]; readonly domain: string; readonly source: string }
  | { readonly t: 'acquire'; readonly path: string; readonly kind: GrantRequest['kind']; readonly count: number }
  | { readonly t: 'release'; readonly path: string; readonly connections: number }
  | { readonly t: 'refund'; readonly path: string; readonly messages: number }
  | { readonly t: 'observe'; readonly path: string; readonly observation: PathObservation; readonly levels: PathLevels }
  | { readonly t: 'session'; readonly path: string; readonly delta: 1 | -1 }
  | { readonly t: 'warmup'; readonly op: 'take' | 'giveBack'; readonly source: string; readonly provider: string; readonly recipients: number };

type ToShard =
  | { readonly t: 'path'; readonly id: number; readonly identity: Identity; readonly snapshot: Snapshot; readonly sessions: PathSessions | undefined }
  | { readonly t: 'settings'; readonly path: string; readonly snapshot: Snapshot }
  | { readonly t: 'grant'; readonly path: string; readonly kind: GrantRequest['kind']; readonly grant: Grant }
  | { readonly t: 'sessions'; readonly path: string; readonly sessions: PathSessions }
  | { readonly t: 'capped'; readonly capped: CappedSources };

/** A pool told "not yet" while its shard's request is on its way asks again this soon. */
export const ASK_AGAIN_MS = 5;
/** A path whose connections are all leased (perhaps by other shards) is asked about this often. */
export const FULL_RETRY_MS = 50;
/** Credit unused this long goes back to the coordinator. */
export const CREDIT_IDLE_MS = 200;
/** A (site, domain) nobody has sent to for this long is forgotten, as the shaper forgets paths. */
export const ROUTE_IDLE_MS = 600_000;

/** The coordinator's end of one shard's channel. `changed` and `reloaded` push settings to it. */
export interface ShardLink {
  /** An adaptive change (or its end) on a path: the shard gets the path's new settings. */
  changed(path: string): void;
  /** New rules: every path the shard knows gets its settings afresh. */
  reloaded(): void;
  /** Warm-up caps changed (docs/egress.md): the shard's deliveries pick sources by these. */
  capped(capped: CappedSources): void;
  close(): void;
}

export function serveShard(channel: Channel, shaper: Pick<Shaper, 'path' | 'acquire' | 'release' | 'refund' | 'observe'>, sessions: SessionTally, clock: Pick<Clock, 'now'>, warmup?: WarmupPort): ShardLink {
  // The question each path was first asked with: asked again on use, so the shaper keeps the path
  // (it forgets paths nobody asks about) and a reload's new handle is picked up.
  const known = new Map<string, { readonly site: SiteName; readonly mx: readonly string[]; readonly domain: string; readonly source: string; handle: PathHandle; usedAt: number }>();
  let sweptAt = clock.now();
  const snapshotOf = (h: PathHandle): Snapshot => ({ settings: h.settings(), hold: h.hold() });
  const send = (m: ToShard): void => channel.postMessage(m);
  // This shard's sessions per path, taken back from the tally if the shard goes.
  const ours = new Map<string, number>();
  const unlisten = sessions.listen((path, counts) => {
    if (known.has(path)) send({ t: 'sessions', path, sessions: counts });
  });
  const touch = (key: string): PathHandle | undefined => {
    const entry = known.get(key);
    if (!entry) return undefined;
    entry.usedAt = clock.now();
    const h = shaper.path(entry.site, entry.mx, entry.domain, entry.source);
    if (h.key === key) entry.handle = h;
    return entry.handle;
  };
  // A shard forgets a route idle for ROUTE_IDLE_MS within two of them (it sweeps at most that
  // often) and asks again if it needs it: a path it has not named for three is gone from it.
  const sweep = (now: number): void => {
    sweptAt = now;
    for (const [key, entry] of known) if (now - entry.usedAt > 3 * ROUTE_IDLE_MS) known.delete(key);
  };
  const listener = (raw: unknown): void => {
    const m = raw as ToCoordinator;
    switch (m.t) {
      case 'path': {
        const now = clock.now();
        if (now - sweptAt > ROUTE_IDLE_MS) sweep(now);
        const h = shaper.path(m.site, m.mx, m.domain, m.source);
        known.set(h.key, { site: m.site, mx: m.mx, domain: m.domain, source: m.source, handle: h, usedAt: now });
        send({ t: 'path', id: m.id, identity: { key: h.key, site: h.site, source: h.source, domain: h.domain, provider: h.provider }, snapshot: snapshotOf(h), sessions: sessions.sessions(h.key) });
        return;
      }
      case 'acquire': {
        touch(m.path);
        const [grant] = shaper.acquire([{ path: m.path, kind: m.kind, count: m.count }]);
        send({ t: 'grant', path: m.path, kind: m.kind, grant: grant ?? { granted: 0 } });
        return;
      }
      case 'release':
        return shaper.release(m.path, m.connections);
      case 'refund':
        return shaper.refund(m.path, m.messages);
      case 'observe': {
        const h = touch(m.path);
        if (h) shaper.observe(h, m.observation, sessions.levels(m.path, m.levels, clock.now()));
        return;
      }
      case 'warmup':
        // The shard has sent already (it checks the caps it was told): counted here, where the caps live.
        if (m.op === 'take') warmup?.take(m.source, m.provider, m.recipients);
        else warmup?.giveBack(m.source, m.provider, m.recipients);
        return;
      case 'session': {
        ours.set(m.path, (ours.get(m.path) ?? 0) + m.delta);
        if (ours.get(m.path) === 0) ours.delete(m.path);
        return sessions.change(m.path, m.delta, clock.now());
      }
    }
  };
  channel.on('message', listener);
  const push = (h: PathHandle): void => send({ t: 'settings', path: h.key, snapshot: snapshotOf(h) });
  return {
    changed(path) {
      const h = known.get(path)?.handle;
      if (h) push(h);
    },
    reloaded() {
      for (const key of known.keys()) push(touch(key) as PathHandle);
    },
    capped: (capped) => send({ t: 'capped', capped }),
    close: () => {
      channel.off?.('message', listener);
      unlisten();
      const now = clock.now();
      for (const [path, open] of ours) for (let i = 0; i < open; i++) sessions.change(path, -1, now);
      ours.clear();
    },
  };
}

interface Credit {
  /** Granted by the coordinator, not yet handed to a pool. */
  held: number;
  /** Asked of the coordinator, answer not yet here (0: not asking). */
  asking: number;
  /** When to tell a pool to ask again, from the coordinator's last answer. */
  retryAt: number | undefined;
  idle: Timer | undefined;
}

interface RemotePath { readonly handle: PathHandle; snapshot: Snapshot; sessions: PathSessions | undefined }

/** A delivery shard's view of the shaper: what its pools call instead of the shaper itself. */
export class RemoteShaping {
  readonly #channel: Channel;
  readonly #clock: Clock;
  readonly #paths = new Map<string, RemotePath>();
  /** (site, domain) → the path key the coordinator chose, or the answer on its way. */
  readonly #routes = new Map<string, { answer: PathHandle | Promise<PathHandle>; usedAt: number }>();
  #sweptAt: number;
  readonly #waiting = new Map<number, (m: Extract<ToShard, { t: 'path' }>) => void>();
  readonly #credit = new Map<string, Credit>();
  /** Warm-up caps as the coordinator last told (docs/egress.md). */
  #capped: CappedSources = {};
  #nextId = 0;

  constructor(channel: Channel, clock: Clock) {
    this.#channel = channel;
    this.#clock = clock;
    this.#sweptAt = clock.now();
    channel.on('message', (raw) => this.#receive(raw as ToShard));
  }

  /** The path a domain's mail takes; a round trip to the coordinator the first time only. */
  path(site: SiteName, mxHosts: readonly string[], domain: string, source: string): PathHandle | Promise<PathHandle> {
    const route = `${source}|${site}|${domain}`;
    const now = this.#clock.now();
    if (now - this.#sweptAt > ROUTE_IDLE_MS) this.#sweep(now);
    const known = this.#routes.get(route);
    if (known) {
      known.usedAt = now;
      return known.answer;
    }
    const id = this.#nextId++;
    const answer = new Promise<PathHandle>((resolve) => {
      this.#waiting.set(id, (m) => {
        const handle = this.#adopt(m.identity, m.snapshot, m.sessions);
        const entry = this.#routes.get(route);
        if (entry) entry.answer = handle;
        resolve(handle);
      });
    });
    this.#routes.set(route, { answer, usedAt: now });
    this.#send({ t: 'path', id, site, mx: mxHosts, domain, source });
    return answer;
  }

  /**
   * Warm-up as this shard sees it: the caps the coordinator last told, and every attempt counted
   * there. Shards may together pass a cap by what they send in the moment before they are told.
   */
  readonly warmup: WarmupPort = {
    take: (source, provider, recipients) => {
      if (this.warmup.cappedUntil(source, provider) !== undefined) return false;
      this.#send({ t: 'warmup', op: 'take', source, provider, recipients });
      return true;
    },
    giveBack: (source, provider, recipients) => this.#send({ t: 'warmup', op: 'giveBack', source, provider, recipients }),
    cappedUntil: (source, provider) => cappedIn(this.#capped, source, provider, this.#clock.now()),
  };

  acquire(requests: readonly GrantRequest[]): Grant[] {
    return requests.map((r) => this.#grant(r));
  }

  release(path: string, connections: number): void {
    this.#send({ t: 'release', path, connections });
  }

  observe(handle: PathHandle, observation: PathObservation, levels: PathLevels): void {
    this.#send({ t: 'observe', path: handle.key, observation, levels });
  }

  /** A session on the path got past its greeting (+1) or ended (-1). */
  session(path: string, delta: 1 | -1): void {
    this.#send({ t: 'session', path, delta });
  }

  /** Give back all credit (the shard stops). */
  close(): void {
    for (const [key, credit] of this.#credit) this.#giveBack(key, credit);
  }

  /** Forget routes unused for ROUTE_IDLE_MS, the paths no route leads to any more, and idle credit. */
  #sweep(now: number): void {
    this.#sweptAt = now;
    const inUse = new Set<string>();
    for (const [route, entry] of this.#routes) {
      if (now - entry.usedAt > ROUTE_IDLE_MS && !(entry.answer instanceof Promise)) this.#routes.delete(route);
      else if (!(entry.answer instanceof Promise)) inUse.add(entry.answer.key);
    }
    for (const key of this.#paths.keys()) if (!inUse.has(key)) this.#paths.delete(key);
    for (const [key, credit] of this.#credit) if (credit.held === 0 && credit.asking === 0) this.#credit.delete(key);
  }

  #grant(r: GrantRequest): Grant {
    const key = creditKey(r.path, r.kind);
    const credit = this.#credit.get(key) ?? { held: 0, asking: 0, retryAt: undefined, idle: undefined };
    this.#credit.set(key, credit);
    const granted = Math.min(credit.held, r.count);
    credit.held -= granted;
    const short = r.count - granted;
    const now = this.#clock.now();
    if (short === 0) return { granted };
    if (credit.asking > 0) return { granted, retryAt: now + ASK_AGAIN_MS };
    // The coordinator said when more would come: asking sooner would only be refused.
    if (credit.retryAt !== undefined && credit.retryAt > now) return { granted, retryAt: credit.retryAt };
    credit.asking = short;
    this.#send({ t: 'acquire', path: r.path, kind: r.kind, count: short });
    return { granted, retryAt: now + ASK_AGAIN_MS };
  }

  #receive(m: ToShard): void {
    switch (m.t) {
      case 'path':
        this.#waiting.get(m.id)?.(m);
        this.#waiting.delete(m.id);
        return;
      case 'settings': {
        const known = this.#paths.get(m.path);
        if (known) known.snapshot = m.snapshot;
        return;
      }
      case 'sessions': {
        const known = this.#paths.get(m.path);
        if (known) known.sessions = m.sessions;
        return;
      }
      case 'capped':
        this.#capped = m.capped;
        return;
      case 'grant': {
        const key = creditKey(m.path, m.kind);
        const credit = this.#credit.get(key);
        if (!credit) return this.#giveBack(key, { held: m.grant.granted, asking: 0, retryAt: undefined, idle: undefined });
        const asked = credit.asking;
        credit.asking = 0;
        credit.held += m.grant.granted;
        // Short of what was asked: ask again when the coordinator says, or — every lease out,
        // perhaps in other shards, so no release here will tell — poll.
        credit.retryAt = m.grant.granted >= asked ? undefined : (m.grant.retryAt ?? this.#clock.now() + FULL_RETRY_MS);
        this.#armIdle(key, credit);
        return;
      }
    }
  }

  /** Credit not taken within CREDIT_IDLE_MS goes back: another shard may need it. */
  #armIdle(key: string, credit: Credit): void {
    credit.idle?.cancel();
    if (credit.held === 0) return;
    credit.idle = this.#clock.at(this.#clock.now() + CREDIT_IDLE_MS, () => this.#giveBack(key, credit));
  }

  #giveBack(key: string, credit: Credit): void {
    credit.idle?.cancel();
    credit.idle = undefined;
    if (credit.held === 0) return;
    const [path, kind] = splitCreditKey(key);
    if (kind === 'connection') this.#send({ t: 'release', path, connections: credit.held });
    else this.#send({ t: 'refund', path, messages: credit.held });
    credit.held = 0;
  }

  #adopt(identity: Identity, snapshot: Snapshot, sessions: PathSessions | undefined): PathHandle {
    const known = this.#paths.get(identity.key);
    if (known) {
      known.snapshot = snapshot;
      return known.handle;
    }
    const clock = this.#clock;
    const entry: RemotePath = {
      snapshot,
      sessions,
      handle: {
        ...identity,
        settings: () => entry.snapshot.settings,
        hold: () => {
          const hold = entry.snapshot.hold;
          return hold && hold.until > clock.now() ? hold : undefined;
        },
        sessions: () => entry.sessions,
      },
    };
    this.#paths.set(identity.key, entry);
    return entry.handle;
  }

  #send(m: ToCoordinator): void {
    this.#channel.postMessage(m);
  }
}

const creditKey = (path: string, kind: GrantRequest['kind']): string => `${kind}\u0000${path}`;

function splitCreditKey(key: string): [string, GrantRequest['kind']] {
  const at = key.indexOf('\u0000');
  return [key.slice(at + 1), key.slice(0, at) as GrantRequest['kind']];
}
