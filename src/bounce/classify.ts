import type { BounceClassification } from '../model/bounce.ts';
import { enhancedCodeMatches, replyCodeMatches, type SmtpCommand, type SmtpReply } from '../model/reply.ts';
import { normaliseReply, type NormalisedReply, type ReplyInput, type Stage } from './normalize.ts';
import { CAMPAIGN_FAILURE, CLASSES, REASON_TABLE, type Category, type FailureType, type Reason } from './reasons.ts';
import type { Rule } from './rules.ts';

export interface Classification extends BounceClassification {
  readonly reason: Reason;
  readonly category: Category;
  readonly type: FailureType;
}

export interface ClassifyInput extends ReplyInput {
  readonly origin?: 'local' | 'remote';
}

export type Classifier = (reply: ClassifyInput) => Classification;

/**
 * Enhanced codes that name a reason on their own (RFC 3463, RFC 7372, RFC 7505), used when no
 * rule matched the text. `5.7.1` and `5.0.0` are deliberately absent: they cover too much.
 */
const BY_ENHANCED: Readonly<Record<string, Reason>> = {
  '1.0': 'userunknown', '1.1': 'userunknown', '1.3': 'userunknown', '1.4': 'userunknown', '1.2': 'hostunknown',
  '1.6': 'hasmoved', '1.7': 'rejected', '1.8': 'rejected', '1.10': 'notaccept',
  '2.0': 'filtered', '2.1': 'suspend', '2.2': 'mailboxfull', '2.3': 'exceedlimit', '2.4': 'systemerror',
  '3.0': 'systemerror', '3.1': 'systemfull', '3.2': 'systemerror', '3.3': 'systemerror', '3.4': 'mesgtoobig', '3.5': 'systemerror',
  '4.0': 'networkerror', '4.1': 'networkerror', '4.2': 'networkerror', '4.3': 'networkerror', '4.4': 'hostunknown', '4.5': 'toomanyconn', '4.6': 'networkerror', '4.7': 'expired',
  '5.0': 'syntaxerror', '5.1': 'syntaxerror', '5.2': 'syntaxerror', '5.3': 'syntaxerror', '5.4': 'syntaxerror', '5.5': 'syntaxerror', '5.6': 'syntaxerror',
  '6.0': 'contenterror', '6.1': 'contenterror', '6.2': 'contenterror', '6.3': 'contenterror', '6.4': 'contenterror', '6.5': 'contenterror', '6.6': 'contenterror',
  '7.0': 'securityerror', '7.2': 'policyviolation', '7.3': 'securityerror', '7.4': 'securityerror', '7.5': 'securityerror', '7.6': 'securityerror',
  '7.7': 'securityerror', '7.8': 'securityerror', '7.9': 'securityerror', '7.10': 'failedstarttls', '7.11': 'failedstarttls', '7.13': 'suspend',
  '7.14': 'securityerror', '7.15': 'securityerror', '7.16': 'securityerror', '7.17': 'securityerror', '7.18': 'suspend',
  '7.20': 'authfailure', '7.21': 'authfailure', '7.22': 'authfailure', '7.23': 'authfailure', '7.24': 'authfailure',
  '7.25': 'requireptr', '7.26': 'authfailure', '7.27': 'notaccept', '7.28': 'speeding', '7.29': 'authfailure', '7.30': 'authfailure',
};

/** Reply codes alone, last resort: RFC 5321's meanings, "no opinion" where they say little. */
const BY_CODE: Readonly<Record<number, Reason>> = {
  421: 'toomanyconn', 450: 'onhold', 451: 'systemerror', 452: 'systemfull',
  550: 'onhold', 551: 'hasmoved', 552: 'mailboxfull', 553: 'onhold', 554: 'onhold',
};

export function createClassifier(rules: readonly Rule[]): Classifier {
  return (input) => {
    const reply = normaliseReply(input);
    const origin = input.origin ?? 'remote';
    const rule = rules.find((r) => matches(r, reply, origin));
    const [found, decidedBy] = rule ? [rule.reason, rule.id] : fallback(reply);
    const reason = reconsidered(found, reply, rule);
    return finish(reason, decidedBy, reply, rule?.retry);
  };
}

function matches(rule: Rule, reply: NormalisedReply, origin: 'local' | 'remote'): boolean {
  if (rule.origin && rule.origin !== origin) return false;
  if (rule.stages && (!reply.stage || !rule.stages.includes(reply.stage))) return false;
  if (rule.codes && !rule.codes.some((c) => replyCodeMatches(c, reply.code))) return false;
  if (rule.enhanced && !rule.enhanced.some((e) => enhancedCodeMatches(e, reply.enhanced))) return false;
  return rule.match ? rule.match.test(reply.text) : true;
}

/** A reason that condemns the address, checked against what else the reply says. */
function reconsidered(found: Reason, reply: NormalisedReply, rule: Rule | undefined): Reason {
  if (found === 'userunknown' && !addressRefusalBelieved(reply, rule)) return 'filtered';
  // A domain "not found" under a temporary code is a lookup that failed, not a verdict on it.
  if (found === 'hostunknown' && isTemporary(reply)) return 'networkerror';
  return found;
}

function isTemporary(reply: NormalisedReply): boolean {
  return reply.code ? Math.floor(reply.code / 100) === 4 : reply.enhanced?.[0] === '4';
}

/**
 * Words saying the mailbox does not exist are believed when the receiver said them answering
 * RCPT, or gave an addressing enhanced code (X.1.x) with them. Said after DATA, or where nothing
 * tells which command they answered, they are often a filter's: several receivers (Japanese
 * carriers, mail filters, Courier) answer "unknown user" to mail they refused to read. Such a
 * reply does not condemn the address; it is `filtered`. A rule that names its own stage or
 * enhanced code has made that judgement itself, and one marked `believe` is for a receiver known
 * to say those words only of a missing mailbox (Yahoo refuses unknown users after DATA).
 */
function addressRefusalBelieved(reply: NormalisedReply, rule: Rule | undefined): boolean {
  if (rule && (rule.believe || rule.stages || rule.enhanced)) return true;
  if (reply.stage === 'rcpt') return true;
  return reply.enhanced !== undefined && reply.enhanced.split('.')[1] === '1';
}

function fallback(reply: NormalisedReply): [Reason, string] {
  if (reply.enhanced) {
    const detail = reply.enhanced.split('.').slice(1).map(Number).join('.');
    const reason = BY_ENHANCED[detail];
    if (reason) return [reason, `enhanced:${reply.enhanced}`];
  }
  const byCode = BY_CODE[reply.code];
  if (byCode) return [byCode, `code:${reply.code}`];
  return [reply.code || reply.enhanced ? 'onhold' : 'undefined', reply.code ? `code:${reply.code}` : 'none'];
}

function finish(reason: Reason, rule: string, reply: NormalisedReply, retryOverride: boolean | undefined): Classification {
  const entry = REASON_TABLE[reason];
  const codeClass = reply.code ? Math.floor(reply.code / 100) : undefined;
  const enhancedClass = reply.enhanced ? Number(reply.enhanced[0]) : undefined;
  const retry = retryOverride ?? ((codeClass ?? enhancedClass) === 4);
  const mismatch = codeClass && enhancedClass && codeClass !== enhancedClass
    ? `reply code ${reply.code} and enhanced code ${reply.enhanced} disagree; the reply code decides`
    : undefined;
  return {
    reason,
    class: entry.class,
    category: (CLASSES[entry.class] as { category: Category }).category,
    // A failure that will be retried cannot quarantine the address yet.
    type: entry.type === 'hard' && retry ? 'soft' : entry.type,
    failure: CAMPAIGN_FAILURE[reason],
    retry,
    rule,
    ...(mismatch ? { mismatch } : {}),
  };
}

const STAGE_OF: Readonly<Record<SmtpCommand, Stage>> = {
  CONNECT: 'connect', EHLO: 'ehlo', STARTTLS: 'starttls', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data', DNS: 'dns', QUEUE: 'queue',
};

/** The classifier over Tern's own reply model: the command answered is the stage. */
export function classifyReplies(classify: Classifier): (reply: SmtpReply) => Classification {
  return (reply) => classify({
    code: reply.code,
    ...(reply.enhanced ? { enhanced: reply.enhanced } : {}),
    text: reply.text,
    ...(reply.command ? { stage: STAGE_OF[reply.command] } : {}),
    origin: reply.origin,
  });
}
