import type { AttemptOutcome, Route } from '../model/outcome.ts';
import type { PathHold, PathObservation } from '../model/path.ts';
import { formatReply, isSuccess, localReply, type SmtpReply } from '../model/reply.ts';
import type { DeliveryJob } from './pool.ts';

/** A pause holds the mail (no attempt); a failure fails it with the receiver's reply that caused it. */
export function holdOutcome(hold: PathHold, route: Route): AttemptOutcome {
  if (hold.kind === 'fail') return { kind: 'path-failed', route, reply: hold.reply, rule: hold.rule };
  const text = `paused by rule ${hold.rule} until ${new Date(hold.until).toISOString()} after: ${formatReply(hold.reply)}`;
  return { kind: 'held', route, reply: localReply(451, '4.4.5', text, 'QUEUE'), until: hold.until, reason: 'paused' };
}

/** A job with more recipients than the path takes per message, as jobs that each fit. */
export function splitJob(job: DeliveryJob, size: number): DeliveryJob[] {
  const parts: DeliveryJob[] = [];
  const { recipients, recipientDsn } = job.envelope;
  for (let i = 0; i < recipients.length; i += size) {
    const dsn = recipientDsn ? { recipientDsn: recipientDsn.slice(i, i + size) } : {};
    parts.push({ ...job, envelope: { ...job.envelope, recipients: recipients.slice(i, i + size), ...dsn } });
  }
  return parts;
}

/**
 * The outcomes of a split job as one, replies in recipient order. Parts that agree on a hold or
 * a failure of the path stay that; otherwise every part's replies are listed (a part held while
 * another was sent reads as a transient local reply: rare, and never a loss).
 */
export function mergeOutcomes(outcomes: readonly AttemptOutcome[], sizes: readonly number[]): AttemptOutcome {
  const [first] = outcomes;
  if (!first) throw new Error('mergeOutcomes: no parts');
  if (outcomes.every((o) => o.kind === first.kind) && (first.kind === 'held' || first.kind === 'path-failed' || first.kind === 'site-unreachable')) return first;
  const replies: SmtpReply[] = [];
  outcomes.forEach((o, i) => {
    if (o.kind === 'transaction') replies.push(...o.replies);
    else replies.push(...Array.from({ length: sizes[i] ?? 0 }, () => o.reply));
  });
  const sent = outcomes.find((o) => o.kind === 'transaction') ?? first;
  return { kind: 'transaction', route: sent.route, replies };
}

/**
 * What a transaction tells shaping: one "delivered" when any recipient was accepted, and each
 * distinct refusal once with the recipients it covered. Tern's own replies tell it nothing.
 */
export function observationsOf(outcome: AttemptOutcome, recipients: number): PathObservation[] {
  if (outcome.kind !== 'transaction') {
    return outcome.reply.origin === 'remote' ? [{ kind: 'reply', reply: outcome.reply, recipients }] : [];
  }
  const observations: PathObservation[] = [];
  const accepted = outcome.replies.filter(isSuccess).length;
  if (accepted > 0) observations.push({ kind: 'delivered', recipients: accepted });
  const refused = new Map<string, { reply: SmtpReply; recipients: number }>();
  for (const reply of outcome.replies) {
    if (isSuccess(reply) || reply.origin !== 'remote') continue;
    const key = formatReply(reply);
    const seen = refused.get(key);
    if (seen) seen.recipients++;
    else refused.set(key, { reply, recipients: 1 });
  }
  for (const r of refused.values()) observations.push({ kind: 'reply', ...r });
  return observations;
}
