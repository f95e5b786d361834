import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { AppendFile } from '../../src/lib/append-file.ts';
import { tempDir } from '../support/daemon.ts';

t.test('appends accumulate in one open file; after close, an append fails instead of reopening', async (t) => {
  const dir = tempDir('tern-append-');
  t.teardown(() => dir.remove());
  const path = join(dir.path, 'x.del');
  const file = new AppendFile(path);
  await Promise.all([file.append('a\n'), file.append('b\n')]);
  await file.append('c\n');
  t.equal(readFileSync(path, 'latin1'), 'a\nb\nc\n');
  const late = [file.append('d\n'), file.append('e\n')];
  await file.close();
  await Promise.all(late);
  t.equal(readFileSync(path, 'latin1'), 'a\nb\nc\nd\ne\n', 'appends made before close are finished by it');
  await t.rejects(file.append('f\n'), /appended to after close/);
  t.equal(readFileSync(path, 'latin1'), 'a\nb\nc\nd\ne\n', 'nothing written after close');
});

t.test('an append that cannot open its file fails, and a later one tries again', async (t) => {
  const dir = tempDir('tern-append-');
  t.teardown(() => dir.remove());
  const file = new AppendFile(join(dir.path, 'missing', 'x.ack'));
  await t.rejects(file.append('1\n'), { code: 'ENOENT' });
  await t.rejects(file.append('2\n'), { code: 'ENOENT' }, 'not stuck on the first failure');
  await file.close();
});
