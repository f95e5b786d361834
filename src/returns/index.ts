/**
 * returns: mail that comes back after delivery (docs/bounces.md, "Asynchronous bounces"): VERP
 * return paths signed with bounce.secret, a ledger of what was sent so a bounce days later finds
 * its campaign, and the events a returned DSN or complaint becomes.
 */
export { returnPath, readReturnPath } from './verp.ts';
export { SentLedger, findSent, returnsDir, sweepSent, type SentRecipient } from './ledger.ts';
export { eventsOfReturn, type ReturnedRecipient, type ReturnResult, type Returned } from './receive.ts';
export { createReturnHandler, type ReturnHandlerDeps } from './handler.ts';
