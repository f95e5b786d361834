/**
 * ingress: the SMTP listener. Enforces relay permission (allow_networks or AUTH), address syntax,
 * size and recipient limits; rewrites headers (Received, Message-ID, X-Tern-Meta removed); answers
 * 250 only after the spool has the message durably, then hands the envelope to `accept`.
 */
export { createIngress, type Ingress, type IngressPorts, type IngressOptions } from './server.ts';
export { parseMeta } from './meta.ts';
export { MessageRewriter } from './rewrite.ts';
export { checkMailbox } from './address.ts';
export { checkListenerTls } from './tls-files.ts';
export { createReturnsIngress, MAX_RETURN_SIZE, type ReturnsIngress, type ReturnsPorts } from './returns.ts';
