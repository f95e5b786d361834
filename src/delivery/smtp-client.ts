/**
 * Tern's outbound SMTP client (src/delivery/smtp/). Everything past it sees SmtpReply values: a
 * remote reply when the server said something, a local one (timeout, lost connection, TLS
 * failure, a reply past the client's limits) otherwise.
 *
 *   smtp/types.ts        options, envelope, connection and error types
 *   smtp/connect.ts      socket, greeting, EHLO, STARTTLS at the path's TLS level
 *   smtp/tls.ts          the handshake and certificate checks (docs/tls.md)
 *   smtp/wire.ts         reply reading: bounded lines and replies, a deadline per reply
 *   smtp/transaction.ts  MAIL, RCPT, DATA, RSET, QUIT on an open session
 *   smtp/params.ts       ESMTP parameters (SIZE, BODY, SMTPUTF8, DSN), xtext
 *   smtp/dot-stuffing.ts the message body's dots
 */
export { connectClient } from './smtp/connect.ts';
export { loadTrust } from './smtp/tls.ts';
export { stuffDots } from './smtp/dot-stuffing.ts';
export { xtext } from './smtp/params.ts';
export {
  ConnectError, connectFailure,
  type ClientConnection, type ConnectOptions, type Envelope, type RecipientDsn, type SendResult, type Timeouts, type TlsInfo,
} from './smtp/types.ts';
