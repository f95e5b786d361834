import type { PathLevels } from '../model/path.ts';

/** A shard's word on a path's open connections counts this long after it last said it. */
export const LEVEL_FRESH_MS = 60_000;

/**
 * What each shard last said of a path's open connections, so the coordinator reads a receiver's
 * limit as the receiver sees it. An adaptive rule that lowers a limit to what was `observed` (the
 * sessions a tarpit greeted, those open when a 421 came) must count the sessions every shard had
 * open: one shard's own count is a part of it (two shards sharing a receiver's three sessions
 * each saw one or two, and the path was held at half what the receiver took). Every observation
 * a shard sends carries its count, deliveries included, so a shard that is delivering keeps its
 * word fresh without a message of its own.
 */
export class ShardLevels {
  readonly #paths = new Map<string, Map<number, { connections: number; at: number }>>();

  /** `levels` as `shard` saw them, its connections raised by what the other shards last said (fresh ones). */
  across(path: string, shard: number, levels: PathLevels, now: number): PathLevels {
    let said = this.#paths.get(path);
    if (!said) {
      said = new Map();
      this.#paths.set(path, said);
    }
    const own = said.get(shard);
    if (own) {
      own.connections = levels.connections;
      own.at = now;
    } else said.set(shard, { connections: levels.connections, at: now });
    if (said.size === 1) return levels;
    let others = 0;
    for (const [k, word] of said) {
      if (k === shard) continue;
      if (now - word.at > LEVEL_FRESH_MS) said.delete(k);
      else others += word.connections;
    }
    return others === 0 ? levels : { connections: levels.connections + others, sentOnConnection: levels.sentOnConnection };
  }

  /** The shard forgot the path: its word goes, and the path with the last word. */
  forget(path: string, shard: number): void {
    const said = this.#paths.get(path);
    if (!said) return;
    said.delete(shard);
    if (said.size === 0) this.#paths.delete(path);
  }
}
