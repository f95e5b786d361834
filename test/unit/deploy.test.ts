import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { tempDir } from '../support/daemon.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
const UNIT = readFileSync(join(ROOT, 'deploy/tern.service'), 'utf8');
const hasSystemd = spawnSync('systemd-analyze', ['--version']).error === undefined;
const noSystemd = hasSystemd ? false : 'systemd-analyze is not installed (apt-get install systemd)';

/** The unit as installed, with this machine's node where it says /usr/bin/node (verify checks ExecStart exists). */
function installedUnit(): string {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'tern.service');
  writeFileSync(path, UNIT.replaceAll('/usr/bin/node', process.execPath));
  return path;
}

t.test('systemd-analyze verify finds nothing wrong with the unit', { skip: noSystemd }, async (t) => {
  const run = spawnSync('systemd-analyze', ['verify', installedUnit()], { encoding: 'utf8' });
  t.equal(run.status, 0, run.stderr);
  t.equal(run.stderr.trim(), '', 'no warnings');
});

t.test('systemd-analyze security rates the unit 2.0 or below', { skip: noSystemd }, async (t) => {
  const run = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', installedUnit()], { encoding: 'utf8' });
  const level = /Overall exposure level for \S+: ([\d.]+)/.exec(run.stdout + run.stderr);
  t.ok(level, `an exposure level is printed:\n${run.stdout}${run.stderr}`);
  t.ok(Number(level?.[1]) <= 2.0, `exposure ${level?.[1]} ≤ 2.0`);
});

t.test("the unit's system call filter leaves chrt and nice what they need to lower helper threads", { skip: noSystemd }, async (t) => {
  // A group's members, with the groups it names resolved (as systemd does).
  const members = (name: string, seen = new Set<string>()): Set<string> => {
    if (seen.has(name)) return new Set();
    seen.add(name);
    const lines = spawnSync('systemd-analyze', ['syscall-filter', '--no-pager', name], { encoding: 'utf8' }).stdout.split('\n').map((l) => l.trim());
    const own = lines.filter((l) => /^[a-z_0-9]+$/.test(l));
    const groups = lines.filter((l) => /^@[a-z-]+$/.test(l) && l !== name);
    return new Set([...own, ...groups.flatMap((g) => [...members(g, seen)])]);
  };
  t.match(UNIT, /^SystemCallFilter=@system-service$/m);
  t.match(UNIT, /^SystemCallFilter=~@privileged$/m);
  const allowed = members('@system-service');
  const denied = members('@privileged');
  t.ok(allowed.size > 100, `@system-service resolved (${allowed.size} calls)`);
  for (const call of ['sched_setscheduler', 'sched_setattr', 'setpriority', 'execve', 'clone3', 'io_uring_setup']) {
    t.ok(allowed.has(call) && !denied.has(call), `${call} is allowed`);
  }
  t.notMatch(UNIT, /^RestrictRealtime=(?!yes)/m);
  t.notMatch(UNIT, /^PrivateUsers=yes/m, 'PrivateUsers would take CAP_NET_BIND_SERVICE away for port 25');
  t.notMatch(UNIT, /^MemoryDenyWriteExecute=yes/m, 'V8 needs executable memory');
});

t.test('the unit does not restart a daemon whose config or Node cannot work', async (t) => {
  t.match(UNIT, /^RestartPreventExitStatus=78$/m);
});

const oldNode = ['/usr/bin/node', '/usr/local/bin/node'].find((p) => {
  const v = spawnSync(p, ['--version'], { encoding: 'utf8' }).stdout?.trim().match(/^v(\d+)\.(\d+)/);
  return v !== null && v !== undefined && (Number(v[1]) < 22 || (Number(v[1]) === 22 && Number(v[2]) < 19));
});

t.test('bin/tern.js on a Node older than 22.19 says so and exits 78', { skip: oldNode ? false : 'no Node older than 22.19 on this machine' }, async (t) => {
  const run = spawnSync(oldNode as string, [join(ROOT, 'bin/tern.js'), 'check-config'], { encoding: 'utf8' });
  t.equal(run.status, 78);
  t.match(run.stderr, /^tern: needs Node\.js 22\.19 or later; \S+ is v\d+/);
});
