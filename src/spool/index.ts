/**
 * spool: message files (body + envelope + trailer; written to a temp name, fsynced, renamed,
 * directory fsynced with group commit) and per-message recipient journals. A 250 is given only
 * after commit() resolves. recover() lists what is owed after a restart.
 */
export { openSpool, type Spool, type SpoolOptions, type MessageWriter, type LoadedMessage } from './spool.ts';
export { joinSpools } from './joined.ts';
export { parseJournal, replayJournal } from './journal.ts';
