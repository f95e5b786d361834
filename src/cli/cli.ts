import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { loadConfig, resolveConfigPath, type Loaded } from '../config/index.ts';
import { checkFiles, createDaemon } from '../daemon.ts';
import { systemClock } from '../lib/clock.ts';
import { levelledLogger } from '../lib/log-level.ts';
import { authCommand, plaintextPasswordWarnings } from './auth.ts';
import { classifyCommand } from './classify.ts';
import { QUEUE_USAGE, queueCommand } from './queue.ts';
import { check, keygen } from './dkim.ts';
import { CHECK_DOMAIN_USAGE, checkDomainCommand } from './check-domain.ts';

export interface Io {
  readonly out: (line: string) => void;
  readonly err: (line: string) => void;
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  readonly stdin?: Readable;
}

const USAGE = `usage: tern <command> [options]

commands:
  start [--config FILE]          run the daemon in the foreground (JSON logs on stdout)
  check-config [--config FILE]   validate the configuration; print every problem and exit 1
  dkim keygen --domain D --selector S [--algorithm rsa-sha256|ed25519-sha256] [--bits N] [--out DIR]
                                 write a private key and print the DNS TXT record to publish
  dkim check [--config FILE]     check that each configured selector publishes its key
${CHECK_DOMAIN_USAGE}
  auth hash                      read a password on stdin, print its scrypt hash for smtp.auth.users
  classify [--rules FILE] [REPLY]
                                 classify one SMTP reply and print JSON (reason, class, category,
                                 type, retry); with no REPLY, one reply (or JSON object) per stdin
                                 line in, one JSON line out
  classify --message FILE...     read whole bounce, complaint or auto-reply messages: one JSON
                                 line per recipient (file, recipient, kind, status, reply_code,
                                 reason, class, type)
${QUEUE_USAGE}

--config defaults to $TERN_CONFIG, then config/tern.yaml, then built-in defaults.`;

/** Returns the exit code; `start` resolves only when the daemon has stopped. */
export async function run(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'start':
      return start(rest, io);
    case 'check-config':
      return checkConfig(rest, io);
    case 'dkim':
      return dkimCommand(rest, io);
    case 'classify':
      return classifyCommand(rest, io, io.stdin ?? process.stdin);
    case 'auth':
      return authCommand(rest, io, io.stdin ?? process.stdin);
    case 'queue':
      return queueCommand(rest, io);
    case 'check-domain':
      return checkDomainCommand(rest, io);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      io.out(USAGE);
      return command === undefined ? 2 : 0;
    default:
      io.err(`tern: unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

async function dkimCommand(args: readonly string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  try {
    if (sub === 'keygen') return keygen(rest, io);
    if (sub === 'check') {
      const loaded = configFrom(rest, io);
      if (typeof loaded === 'number') return loaded;
      if (!loaded.ok) {
        reportProblems(loaded, io);
        return 1;
      }
      return await check(loaded.config, io);
    }
  } catch (err) {
    io.err(`tern dkim ${sub}: ${(err as Error).message}`);
    return 2;
  }
  io.err(`tern dkim: unknown subcommand "${sub ?? ''}" (keygen, check)\n${USAGE}`);
  return 2;
}

function configFrom(args: readonly string[], io: Io): Loaded | number {
  let values: { config?: string | undefined };
  try {
    ({ values } = parseArgs({ args: [...args], options: { config: { type: 'string', short: 'c' } }, strict: true }));
  } catch (err) {
    io.err(`tern: ${(err as Error).message}`);
    return 2;
  }
  return loadConfig(resolveConfigPath(values.config, io.env, io.cwd));
}

function reportProblems(loaded: Extract<Loaded, { ok: false }>, io: Io): void {
  io.err(`${loaded.source}: ${loaded.problems.length} problem${loaded.problems.length === 1 ? '' : 's'}`);
  for (const p of loaded.problems) io.err(`  ${p.path}: ${p.problem}`);
}

/** Config problems, then DKIM key problems (files are read only once the YAML is valid). */
function fullCheck(loaded: Loaded): Extract<Loaded, { ok: false }> | undefined {
  if (!loaded.ok) return loaded;
  const problems = checkFiles(loaded.config);
  return problems.length > 0 ? { ok: false, source: loaded.source, problems } : undefined;
}

function checkConfig(args: readonly string[], io: Io): number {
  const loaded = configFrom(args, io);
  if (typeof loaded === 'number') return loaded;
  const failed = fullCheck(loaded);
  if (failed || !loaded.ok) {
    reportProblems(failed ?? (loaded as Extract<Loaded, { ok: false }>), io);
    return 1;
  }
  for (const warning of plaintextPasswordWarnings(loaded.config)) io.err(`warning: ${warning}`);
  io.out(`${loaded.source}: configuration is valid`);
  return 0;
}

/**
 * `start` exit codes (docs/operations.md, "Exit codes"): a config that cannot work exits
 * EXIT_CONFIG, which the systemd unit does not restart (RestartPreventExitStatus), since a restart
 * loop would not mend it; anything else that stops the start exits 1, which may pass (a port in use).
 */
const EXIT_CONFIG = 78; // sysexits.h EX_CONFIG

async function start(args: readonly string[], io: Io): Promise<number> {
  const loaded = configFrom(args, io);
  if (typeof loaded === 'number') return loaded;
  const failed = fullCheck(loaded);
  if (failed || !loaded.ok) {
    // One JSON line, like every other line `start` writes, for the journal and log shippers.
    const bad = failed ?? (loaded as Extract<Loaded, { ok: false }>);
    pino({ base: { service: 'tern' }, timestamp: pino.stdTimeFunctions.isoTime }).fatal({ config: bad.source, problems: bad.problems, exit: EXIT_CONFIG }, 'configuration is invalid: nothing started');
    return EXIT_CONFIG;
  }
  const { log, setLevel } = levelledLogger({ level: loaded.config.log.level, base: { service: 'tern' }, timestamp: pino.stdTimeFunctions.isoTime });
  log.info({ config: loaded.source }, 'starting');
  let shardFailed: (() => void) | undefined;
  let daemon: ReturnType<typeof createDaemon> | undefined;
  try {
    daemon = createDaemon(loaded.config, { clock: systemClock, log, onFailure: () => shardFailed?.(), setLogLevel: setLevel });
    await daemon.start();
  } catch (err) {
    log.fatal({ err: { message: (err as Error).message, code: (err as NodeJS.ErrnoException).code }, exit: 1 }, 'cannot start');
    await daemon?.stop(0).catch(() => undefined);
    return 1;
  }
  log.info({ smtp: daemon.smtpAddresses(), admin: daemon.adminAddress() }, 'ready');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = (signal: string, code = 0): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'shutdown requested');
      daemon.stop().then(
        () => resolve(code),
        (err: unknown) => {
          log.error({ err }, 'unclean shutdown');
          resolve(1);
        },
      );
    };
    process.on('SIGHUP', () => {
      log.info({ signal: 'SIGHUP' }, 'reload requested');
      // The file as it is now; one that does not validate changes nothing.
      const next = configFrom(args, io);
      if (typeof next === 'number' || !next.ok) {
        const problems = typeof next === 'number' ? [] : next.problems;
        log.error({ config: loaded.source, problems }, 'reload: the configuration file is invalid; the running configuration stays in force');
        return;
      }
      daemon.reload(next.config);
    });
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
    // A shard that died holds its partition's mail until a restart: stop, exit 1, let the supervisor restart.
    shardFailed = () => shutdown('shard failure', 1);
  });
}
