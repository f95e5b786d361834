import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ADMIN_TOKEN, testConfig } from './daemon.ts';
import { freePort } from './ports.ts';

export interface TernProcess {
  readonly proc: ChildProcess;
  readonly lines: Record<string, unknown>[];
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
}

const ROOT = new URL('../../', import.meta.url).pathname;

export function writeConfig(dir: string, config: Record<string, unknown>): string {
  const path = join(dir, 'tern.yaml');
  writeFileSync(path, stringify(config));
  return path;
}

/** The real `tern start` in a child process, as an operator runs it; resolves once it is ready. */
export async function spawnTern(configPath: string): Promise<TernProcess> {
  const proc = spawn(process.execPath, [join(ROOT, 'bin/tern.js'), 'start', '--config', configPath], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  proc.stderr?.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | string>((resolve) => proc.on('exit', (code, signal) => resolve(code ?? signal ?? -1)));
  const ready = new Promise<void>((resolve, reject) => {
    let partial = '';
    proc.stdout?.on('data', (chunk: Buffer) => {
      partial += chunk.toString();
      const parts = partial.split('\n');
      partial = parts.pop() ?? '';
      for (const part of parts) {
        if (part.trim() === '') continue;
        const line = JSON.parse(part) as Record<string, unknown>;
        lines.push(line);
        if (line.msg === 'ready') resolve();
      }
    });
    void exited.then((code) => reject(new Error(`tern exited (${code}) before ready: ${stderr}`)));
  });
  await ready;
  return { proc, lines, exited };
}

/**
 * A config file for a child `tern start` on loopback: free SMTP and admin ports, `info` logs
 * (spawnTern waits for the "ready" line), the test defaults of testConfig, and `extra` over them.
 */
export async function childConfig(dir: string, world: { dns: { server: string }; port: number }, extra: Record<string, unknown> = {}): Promise<{ configPath: string; smtpPort: number; adminPort: number }> {
  const smtpPort = await freePort();
  const adminPort = await freePort();
  const configPath = writeConfig(dir, testConfig({
    dnsServer: world.dns.server, deliveryPort: world.port, spoolDir: dir,
    smtp: { listen: [`127.0.0.1:${smtpPort}`] }, admin: { listen: `127.0.0.1:${adminPort}`, token: ADMIN_TOKEN }, log: { level: 'info' },
    ...extra,
  }));
  return { configPath, smtpPort, adminPort };
}

/**
 * `total` sends over `sessions` connections at once, with a `kill -9` of `tern` as send number
 * `killAt` starts, as a campaign tool would see a crash. `send` says whether the message was
 * accepted; the sequence numbers refused (the daemon was down) are returned for resending.
 */
export async function streamThroughKill(tern: TernProcess, opts: { total: number; sessions: number; killAt: number; send(seq: number): Promise<boolean> }): Promise<number[]> {
  const refused: number[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: opts.sessions }, async () => {
    while (next < opts.total) {
      const seq = next++;
      if (seq === opts.killAt) tern.proc.kill('SIGKILL');
      if (!(await opts.send(seq))) refused.push(seq);
    }
  }));
  return refused;
}
