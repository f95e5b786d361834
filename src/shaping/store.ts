import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { replaceFile } from '../lib/atomic-file.ts';
import type { SavedState } from './adaptive.ts';

/**
 * Adaptive state on disk (`<state_dir>/adaptive.json`), so a restart does not hammer a receiver
 * that has just throttled us. Replaced whole (lib/atomic-file.ts). Losing the last few seconds of
 * counts is harmless; losing a pause is not, so changes to effects are saved within a second.
 */
const FILE = 'adaptive.json';

export async function saveState(dir: string, state: SavedState, savedAt: number): Promise<void> {
  await replaceFile(dir, FILE, `${JSON.stringify({ ...state, saved_at: new Date(savedAt).toISOString() })}\n`);
}

export type LoadedState = { kind: 'none' } | { kind: 'loaded'; state: SavedState } | { kind: 'unreadable'; problem: string };

export async function loadState(dir: string): Promise<LoadedState> {
  let text: string;
  try {
    text = await readFile(join(dir, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'none' };
    return { kind: 'unreadable', problem: (err as Error).message };
  }
  try {
    const parsed = JSON.parse(text) as Partial<SavedState>;
    if (parsed.version !== 1 || typeof parsed.paths !== 'object' || parsed.paths === null) return { kind: 'unreadable', problem: 'not a version 1 state file' };
    return { kind: 'loaded', state: parsed as SavedState };
  } catch (err) {
    return { kind: 'unreadable', problem: (err as Error).message };
  }
}
