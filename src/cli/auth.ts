import type { Readable } from 'node:stream';
import type { Config } from '../config/index.ts';
import { hashPassword, isHashed } from '../ingress/secrets.ts';
import type { Io } from './cli.ts';

/**
 * `tern auth hash`: reads a password from stdin (one line; a trailing newline is not part of it)
 * and prints the scrypt hash to put in smtp.auth.users[].password. Read from stdin, never an
 * argument, so the password stays out of the shell history and `ps`.
 */
export async function authCommand(args: readonly string[], io: Io, stdin: Readable): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'hash' || rest.length > 0) {
    io.err('usage: tern auth hash   (reads the password from stdin, prints its hash)');
    return 2;
  }
  const password = (await readAll(stdin)).replace(/\r?\n$/, '');
  if (password === '') {
    io.err('tern auth hash: empty password on stdin');
    return 1;
  }
  io.out(await hashPassword(password));
  return 0;
}

/** check-config's warnings: each AUTH password kept in plaintext. */
export function plaintextPasswordWarnings(config: Config): string[] {
  return config.smtp.auth.users.flatMap((user, i) =>
    isHashed(user.password) ? [] : [`smtp.auth.users[${i}].password: plaintext password for "${user.username}"; store a hash from \`tern auth hash\` instead`]);
}

async function readAll(stream: Readable): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(parts).toString('utf8');
}
