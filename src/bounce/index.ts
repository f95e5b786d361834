/**
 * bounce: every reply (remote or Tern's own) → reason, Momentum class, category, type and whether
 * to retry, by ordered rules from YAML (operator's first, then src/bounce/default-rules.yaml),
 * then enhanced code, then reply code. Pure: no I/O after the rules are loaded.
 */
export { classifyReplies, createClassifier, type Classification, type Classifier, type ClassifyInput } from './classify.ts';
export { normaliseReply, STAGES, type Stage, type ReplyInput } from './normalize.ts';
export { defaultRules, loadBounceRules, loadRulesFile, parseRules, type Rule, type RuleProblem, type LoadedRules } from './rules.ts';
export { CLASSES, REASONS, REASON_TABLE, type Category, type FailureType, type Reason } from './reasons.ts';
export { qualifyMessage, type QualifiedRecipient } from './message/qualify.ts';
export { readBounceMessage, type FoundRecipient, type MessageKind } from './message/read.ts';
