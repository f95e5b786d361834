import t from 'tap';
import { hashPassword, UNKNOWN_USER, verifyPassword } from '../../../src/ingress/secrets.ts';

t.test('scrypt hashes: the right password matches, a wrong one, the hash itself or a tampered hash do not', async (t) => {
  const cheap = { ln: 10, r: 8, p: 1 };
  const hash = await hashPassword('pässword', cheap);
  t.match(hash, /^\$scrypt\$ln=10,r=8,p=1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/);
  t.not(await hashPassword('pässword', cheap), hash, 'salted: two hashes of one password differ');
  t.equal(await verifyPassword(hash, 'pässword'), true);
  t.equal(await verifyPassword(hash, 'password'), false);
  t.equal(await verifyPassword(hash, hash), false);
  t.equal(await verifyPassword(hash.replace('ln=10', 'ln=11'), 'pässword'), false, 'the cost is part of the hash');
  t.equal(await verifyPassword('$scrypt$ln=99,r=8,p=1$AAAA$AAAA', 'x'), false, 'an absurd cost is refused, not computed');
  t.equal(await verifyPassword('$scrypt$nonsense', 'x'), false);
  t.equal(await verifyPassword(UNKNOWN_USER, ''), false);
});

t.test('plaintext passwords still work, of any length', async (t) => {
  t.equal(await verifyPassword('s3cret', 's3cret'), true);
  t.equal(await verifyPassword('s3cret', 's3cre'), false);
  t.equal(await verifyPassword('s3cret', 's3cret!'), false);
});

t.test('hashing runs off the event loop: timers keep firing while it works', async (t) => {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  await hashPassword('x', { ln: 16, r: 8, p: 1 });
  clearInterval(timer);
  t.ok(ticks > 0, `${ticks} timer ticks during one N=2^16 hash`);
});
