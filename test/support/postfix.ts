import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.ts';

/**
 * A private Postfix instance on loopback, for tests that hold Tern's listener up against Postfix's
 * smtpd (Debian's `postfix` package; .ci/run installs it). Its own configuration directory, queue
 * and log in a scratch directory; the system's /etc/postfix is never read or changed. Mail it takes
 * is discarded: these tests are about what smtpd answers, not where mail goes.
 */
export interface PostfixInstance {
  readonly port: number;
  stop(): Promise<void>;
}

/** Why Postfix cannot run here, or undefined when it can (root, the package, a `postfix` user). */
export function postfixMissing(): string | undefined {
  if (!existsSync('/usr/sbin/postfix')) return 'Postfix is not installed (apt-get install postfix)';
  if (process.getuid?.() !== 0) return 'starting a Postfix instance needs root';
  if (spawnSync('id', ['-u', 'postfix']).status !== 0) return 'no "postfix" user';
  return undefined;
}

// The services smtpd and the queue manager need, without chroot (the scratch directory is no jail).
const MASTER_CF = `
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
proxymap   unix  -       -       n       -       -       proxymap
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
`;

/**
 * The main.cf lines of a private instance on 127.0.0.1 that relays for loopback clients and
 * delivers nowhere locally: its queue, data and log in the given places. The relay bench builds
 * its Postfix from these too.
 */
export function privateMainCf(at: { queue: string; data: string; maillog: string; prefix: string; hostname: string }): string[] {
  return [
    'compatibility_level = 3.6',
    `queue_directory = ${at.queue}`,
    `data_directory = ${at.data}`,
    `maillog_file = ${at.maillog}`,
    `maillog_file_prefixes = ${at.prefix}`,
    `myhostname = ${at.hostname}`,
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mydestination =',
    'local_recipient_maps =',
    'alias_maps =',
    'alias_database =',
    'mynetworks = 127.0.0.0/8',
    'smtpd_relay_restrictions = permit_mynetworks, reject',
    'smtpd_tls_security_level = none',
    'biff = no',
  ];
}

/** mainCf: extra main.cf lines (they win over the defaults here, as later lines do in Postfix). */
export async function startPostfix(mainCf: readonly string[] = []): Promise<PostfixInstance> {
  const dir = mkdtempSync(join(tmpdir(), 'tern-postfix-'));
  const etc = join(dir, 'etc');
  const queue = join(dir, 'queue');
  const data = join(dir, 'data');
  for (const d of [etc, queue, data]) mkdirSync(d, { recursive: true });
  // Postfix's daemons run as user postfix and must reach their queue through every parent.
  for (const d of [dir, etc, queue, data]) chmodSync(d, 0o755);
  const id = (flag: string): number => Number(spawnSync('id', [flag, 'postfix'], { encoding: 'utf8' }).stdout.trim());
  chownSync(data, id('-u'), id('-g'));
  const port = await freePort();
  const maillog = join(dir, 'maillog');
  writeFileSync(join(etc, 'main.cf'), [
    ...privateMainCf({ queue, data, maillog, prefix: dir, hostname: 'postfix.test' }),
    'default_transport = discard',
    'relay_transport = discard',
    ...mainCf,
    '',
  ].join('\n'));
  writeFileSync(join(etc, 'master.cf'), `127.0.0.1:${port} inet n - n - - smtpd\n${MASTER_CF.trimStart()}`);
  const postfix = (command: string): { ok: boolean; out: string } => {
    const r = spawnSync('/usr/sbin/postfix', ['-c', etc, command], { encoding: 'utf8' });
    return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
  };
  const why = (what: string, out: string): Error => {
    const log = existsSync(maillog) ? readFileSync(maillog, 'utf8').trim().split('\n').slice(-5) : [];
    return new Error([`${what} failed`, out, ...log].filter(Boolean).join('\n  '));
  };
  const stop = async (): Promise<void> => {
    postfix('stop');
    const pidFile = join(queue, 'pid', 'master.pid');
    const deadline = Date.now() + 10_000;
    while (masterAlive(pidFile) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    if (masterAlive(pidFile)) postfix('abort');
    rmSync(dir, { recursive: true, force: true });
  };
  // `check` creates the queue's directories and sets their owners.
  if (!postfix('check').ok) postfix('set-permissions');
  const started = postfix('start');
  if (!started.ok) {
    await stop();
    throw why('postfix start', started.out);
  }
  const deadline = Date.now() + 20_000;
  while (!(await greets(port))) {
    if (Date.now() > deadline) {
      await stop();
      throw why(`Postfix's smtpd on 127.0.0.1:${port}`, 'no 220 after 20 s');
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, stop };
}

/** True while the master whose pid file this is runs (Postfix removes the file once all its children are gone). */
export function masterAlive(pidFile: string): boolean {
  if (!existsSync(pidFile)) return false;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** True when something on 127.0.0.1:port sends a 220 greeting. */
function greets(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    let said = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2_000, () => done(false));
    socket.setEncoding('utf8');
    socket.on('data', (s: string) => {
      said += s;
      if (said.includes('\n')) done(said.startsWith('220'));
    });
    socket.once('error', () => done(false));
  });
}
