/**
 * dkim: keys (loaded and checked at start), relaxed/relaxed signing of the stored header block
 * plus a body hash computed while the message streams to disk, signatures made in the thread
 * pool. Knows nothing of SMTP or the spool.
 */
export { MessageHasher } from './canonical.ts';
export { createSigner, fromDomain, type MessageSigning, type Signer, type SignRequest } from './signer.ts';
export { loadKeys, keysFor, txtRecord, publicKeyData, type DkimKey, type DkimKeyConfig, type DkimAlgorithm, type KeyProblem } from './keys.ts';
