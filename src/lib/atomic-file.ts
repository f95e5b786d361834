import { mkdir, open, rename } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Replaces `dir/name` whole: written to a temporary name, fsynced, renamed, and the directory
 * synced, so a crash leaves the previous file or the new one, never half of either. For small
 * state files written now and then (adaptive state, admin suspensions), not for the spool.
 */
export async function replaceFile(dir: string, name: string, text: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const path = join(dir, name);
  const tmp = `${path}.tmp`;
  const fh = await open(tmp, 'w', 0o600);
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await rename(tmp, path);
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
