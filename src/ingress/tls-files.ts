import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';

/** smtp.tls must name a readable certificate and its key, or start would die reading them. */
export function checkListenerTls(tls: { cert: string; key: string } | undefined): { path: string; problem: string }[] {
  if (!tls) return [];
  const read = (key: 'cert' | 'key'): Buffer | { path: string; problem: string } => {
    try {
      return readFileSync(tls[key]);
    } catch (err) {
      return { path: `smtp.tls.${key}`, problem: `cannot read ${tls[key]}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
    }
  };
  const cert = read('cert');
  const key = read('key');
  const unread = [cert, key].filter((r): r is { path: string; problem: string } => !Buffer.isBuffer(r));
  if (unread.length > 0) return unread;
  try {
    createSecureContext({ cert: cert as Buffer, key: key as Buffer });
    return [];
  } catch (err) {
    return [{ path: 'smtp.tls', problem: `${tls.cert} and ${tls.key} are not a certificate and its private key: ${(err as Error).message}` }];
  }
}
