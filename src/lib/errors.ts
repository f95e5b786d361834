/** Faults carry a stable code so callers and logs can match on it, not on message text. */
export type TernErrorCode =
  | 'TERN_CONFIG_INVALID'
  | 'TERN_SPOOL_WRITE'
  /** A message would take free space below spool.min_free, the reserve for journals and events. */
  | 'TERN_SPOOL_FULL'
  | 'TERN_SPOOL_CORRUPT'
  | 'TERN_DNS_TIMEOUT'
  | 'TERN_OUTBOX_WRITE'
  | 'TERN_USAGE';

export class TernError extends Error {
  readonly code: TernErrorCode;
  constructor(code: TernErrorCode, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TernError';
    this.code = code;
  }
}
