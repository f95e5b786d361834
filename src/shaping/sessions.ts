import { PeakMeter } from '../lib/rate-meter.ts';
import type { PathLevels, PathSessions } from '../model/path.ts';

/**
 * Sessions past the greeting on each path, counted across every delivery shard (ADR 0010). One
 * loop's pool sees all of a path's sessions itself; a shard's pool sees only its own share, so a
 * tarpit judged by one shard's count looks empty (no early abort: a stalled attempt holds its
 * lease for the whole greeting timeout) and an `observed` cut from one shard's count is a fraction
 * of what the receiver took. The coordinator keeps the whole count here, pushes it to the shards
 * that use the path, and takes a relative change's connection level from it.
 */

/** A path with no session open and no change for this long is forgotten (its peak has aged out). */
export const SESSIONS_IDLE_MS = 60_000;

interface Tally { open: number; opened: number; openedAt: number; changedAt: number; readonly peak: PeakMeter }

export class SessionTally {
  readonly #paths = new Map<string, Tally>();
  readonly #listeners = new Set<(path: string, sessions: PathSessions) => void>();
  readonly #peakWindowMs: number;
  /** Every open on every path takes the next number: a path's `opened` only grows, even once forgotten and met again. */
  #sequence = 0;
  #sweptAt = 0;

  constructor(peakWindowMs: number) {
    this.#peakWindowMs = peakWindowMs;
  }

  /** A session on `path` got past its greeting (+1) or ended (-1). */
  change(path: string, delta: 1 | -1, now: number): void {
    if (now - this.#sweptAt > SESSIONS_IDLE_MS) this.#sweep(now);
    let tally = this.#paths.get(path);
    if (!tally) {
      if (delta < 0) return; // a session of a path forgotten: nothing to take it from
      tally = { open: 0, opened: 0, openedAt: 0, changedAt: now, peak: new PeakMeter(Math.ceil(this.#peakWindowMs / 1000)) };
      this.#paths.set(path, tally);
    }
    tally.open = Math.max(0, tally.open + delta);
    if (delta > 0) {
      tally.opened = ++this.#sequence;
      tally.openedAt = now;
    }
    tally.changedAt = now;
    tally.peak.note(now, tally.open);
    const sessions = { open: tally.open, opened: tally.opened, openedAt: tally.openedAt };
    for (const listener of this.#listeners) listener(path, sessions);
  }

  sessions(path: string): PathSessions | undefined {
    const tally = this.#paths.get(path);
    return tally && { open: tally.open, opened: tally.opened, openedAt: tally.openedAt };
  }

  /** A shard's levels with the connection count of every shard: at the time, or the peak since `peakFrom`. */
  levels(path: string, levels: PathLevels, now: number): PathLevels {
    const tally = this.#paths.get(path);
    if (!tally) return levels;
    tally.peak.note(now, tally.open);
    const all = levels.peakFrom === undefined ? tally.open : tally.peak.maxSince(levels.peakFrom, now);
    return { ...levels, connections: Math.max(levels.connections, all) };
  }

  /** Told of every change (a shard's link pushes it to its shard). Returns the unsubscribe. */
  listen(listener: (path: string, sessions: PathSessions) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #sweep(now: number): void {
    this.#sweptAt = now;
    for (const [path, tally] of this.#paths) if (tally.open === 0 && now - tally.changedAt > Math.max(SESSIONS_IDLE_MS, this.#peakWindowMs)) this.#paths.delete(path);
  }
}
