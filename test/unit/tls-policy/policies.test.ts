import { pino } from 'pino';
import t from 'tap';
import type { Parsed, StsPolicy } from '../../../src/tls-policy/mta-sts.ts';
import { createTlsPolicies, POLICY_LIMITS } from '../../../src/tls-policy/policies.ts';
import { tempDir } from '../../support/daemon.ts';
import { FakeClock } from '../../support/fake-clock.ts';

const ENFORCE: StsPolicy = { mode: 'enforce', mx: ['mx.example.com'], maxAgeSeconds: 3_600 };

/** A domain's TXT answer and policy host, scripted; every fetch counted. */
function world(t: { teardown(fn: () => unknown): void }) {
  const dir = tempDir();
  t.teardown(() => dir.remove());
  const clock = new FakeClock(Date.parse('2026-12-06T10:00:00Z'));
  const state = { txt: ['v=STSv1; id=one'] as string[] | undefined, policy: { ok: true, value: ENFORCE } as Parsed<StsPolicy>, fetches: 0 };
  const opened: { stop(): Promise<void> }[] = [];
  t.teardown(async () => {
    for (const p of opened) await p.stop();
  });
  const open = () => remember(createTlsPolicies({
    txt: async () => state.txt,
    fetch: async () => {
      state.fetches++;
      return state.policy;
    },
    stateDir: dir.path, clock, log: pino({ level: 'silent' }),
  }));
  const remember = <P extends { stop(): Promise<void> }>(p: P): P => {
    opened.push(p);
    return p;
  };
  return { clock, state, open };
}

t.test('a published policy is fetched once and used by its id until the id changes', async (t) => {
  const { state, open } = world(t);
  const p = open();
  await p.start();
  t.same(await p.forDomain('Example.COM.'), { kind: 'mta-sts', mode: 'enforce', id: 'one', mx: ['mx.example.com'], maxAgeSeconds: 3_600 });
  await p.forDomain('example.com');
  t.equal(state.fetches, 1, 'the same id: no second fetch');
  state.txt = ['v=STSv1; id=two'];
  state.policy = { ok: true, value: { ...ENFORCE, mode: 'testing' } };
  t.match(await p.forDomain('example.com'), { mode: 'testing', id: 'two' }, 'a new id: fetched again');
  t.equal(state.fetches, 2);
});

t.test('no record and nothing cached: no policy; a fetch that fails never blocks mail unless a policy is cached', async (t) => {
  const { clock, state, open } = world(t);
  const p = open();
  state.txt = undefined;
  t.same(await p.forDomain('example.com'), { kind: 'none' });
  state.txt = ['v=STSv1; id=one'];
  state.policy = { ok: false, error: 'https://mta-sts.example.com: connect ECONNREFUSED' };
  t.same(await p.forDomain('example.com'), { kind: 'none' }, 'a failed fetch with nothing cached: no policy');
  await p.forDomain('example.com');
  t.equal(state.fetches, 1, 'a failed fetch is not tried again at once');
  await clock.advance(POLICY_LIMITS.failureBackoffMs);
  state.policy = { ok: true, value: ENFORCE };
  t.match(await p.forDomain('example.com'), { kind: 'mta-sts', mode: 'enforce' }, 'tried again after the backoff');

  state.txt = ['v=STSv1; id=two'];
  state.policy = { ok: false, error: 'HTTP 500' };
  t.match(await p.forDomain('example.com'), { mode: 'enforce', id: 'one' }, 'a new id whose policy cannot be fetched: the cached one holds');
});

t.test('a record that disappears does not take the cached policy with it, until it expires', async (t) => {
  const { clock, state, open } = world(t);
  const p = open();
  await p.forDomain('example.com');
  state.txt = undefined;
  t.match(await p.forDomain('example.com'), { kind: 'mta-sts', mode: 'enforce' }, 'RFC 8461 §5.1: kept while valid');
  await clock.advance(ENFORCE.maxAgeSeconds * 1000);
  t.same(await p.forDomain('example.com'), { kind: 'none' }, 'max_age over: gone');
});

t.test('policies outlive a restart on disk; an old one is refreshed in the background', async (t) => {
  const { clock, state, open } = world(t);
  const first = open();
  await first.start();
  state.policy = { ok: true, value: { ...ENFORCE, maxAgeSeconds: 3 * 86_400 } };
  await first.forDomain('example.com');
  await first.stop();
  const second = open();
  await second.start();
  state.txt = undefined;
  t.match(await second.forDomain('example.com'), { kind: 'mta-sts', id: 'one' }, 'read back after a restart, record or not');
  state.txt = ['v=STSv1; id=one'];
  await clock.advance(POLICY_LIMITS.refreshMs);
  const before = state.fetches;
  t.match(await second.forDomain('example.com'), { kind: 'mta-sts' }, 'answered from the cache at once');
  await new Promise((r) => setImmediate(r));
  t.equal(state.fetches, before + 1, 'and fetched again behind it');
});

t.test('mode none: the domain has withdrawn its policy', async (t) => {
  const { state, open } = world(t);
  state.policy = { ok: true, value: { mode: 'none', mx: [], maxAgeSeconds: 3_600 } };
  t.same(await open().forDomain('example.com'), { kind: 'none' });
});
