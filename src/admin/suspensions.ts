import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { replaceFile } from '../lib/atomic-file.ts';
import type { Clock } from '../lib/clock.ts';
import { suspensionKey, type Suspension } from '../model/suspension.ts';

/**
 * The operator's suspensions (POST /api/v1/suspend and /resume), kept in
 * `<admin.state_dir>/suspensions.json` so a restart does not send mail an operator held back.
 * The file is replaced whole on every change, before the change is answered; a suspension past
 * its end is dropped on the next change or start, and is not in force meanwhile.
 */
const FILE = 'suspensions.json';

export interface Suspensions {
  /** In force now. */
  list(): Suspension[];
  /** Suspends a domain or site (replacing one already on it, whatever its end); saved before it resolves. */
  suspend(target: Suspension['target'], name: string, durationMs: number, reason: string): Promise<Suspension>;
  /** Ends a suspension early; undefined if none was in force. */
  resume(target: Suspension['target'], name: string): Promise<Suspension | undefined>;
  /** A suspension made on another node of a fleet, kept as it was made; false if it was already in force. */
  apply(suspension: Suspension): Promise<boolean>;
}

/** Reads the file now (at construction, like the keys and rules): a start must not send held mail. */
export function openSuspensions(dir: string, clock: Clock, log: Logger): Suspensions {
  let all = load(dir, log);
  const live = (): Suspension[] => all.filter((s) => s.until > clock.now());
  const save = async (next: Suspension[]): Promise<void> => {
    await replaceFile(dir, FILE, `${JSON.stringify({ version: 1, suspensions: next }, null, 1)}\n`);
    all = next;
  };
  const others = (target: Suspension['target'], name: string): Suspension[] => live().filter((s) => suspensionKey(s) !== suspensionKey({ target, name }));
  return {
    list: live,
    async suspend(target, name, durationMs, reason) {
      const now = clock.now();
      const suspension: Suspension = { target, name, reason, since: now, until: now + durationMs };
      await save([...others(target, name), suspension]);
      return suspension;
    },
    async resume(target, name) {
      const found = live().find((s) => suspensionKey(s) === suspensionKey({ target, name }));
      if (!found) return undefined;
      await save(others(target, name));
      return found;
    },
    async apply(suspension) {
      const key = suspensionKey(suspension);
      if (suspension.until <= clock.now() || live().some((s) => suspensionKey(s) === key && s.since === suspension.since && s.until === suspension.until)) return false;
      await save([...others(suspension.target, suspension.name), suspension]);
      return true;
    },
  };
}

function load(dir: string, log: Logger): Suspension[] {
  let text: string;
  try {
    text = readFileSync(join(dir, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  // A file we cannot read would silently lift every suspension: refuse to start instead.
  const parsed = JSON.parse(text) as { version?: number; suspensions?: Suspension[] };
  if (parsed.version !== 1 || !Array.isArray(parsed.suspensions)) throw new Error(`${join(dir, FILE)}: not a version 1 suspensions file`);
  if (parsed.suspensions.length > 0) log.info({ suspensions: parsed.suspensions.length }, 'admin: suspensions read from the last run');
  return parsed.suspensions;
}
