import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { FeedbackEvent } from '../../src/model/event.ts';

export interface ReceivedBatch {
  readonly batchId: string;
  readonly signatureValid: boolean;
  readonly events: FeedbackEvent[];
  readonly status: number;
}

/** How the receiver answers the next request: a status, after an optional delay. */
export type Answer = { status: number; delayMs?: number } | 'drop';

/**
 * A real HTTP webhook endpoint on 127.0.0.1: checks X-Tern-Signature, records every batch and
 * the events it acknowledged (2xx), and answers as the test scripts it (`answer`).
 */
export class WebhookReceiver {
  readonly batches: ReceivedBatch[] = [];
  answer: (request: number) => Answer = () => ({ status: 200 });
  #server: Server;
  #requests = 0;
  #secret: string;

  constructor(secret: string) {
    this.#secret = secret;
    this.#server = createServer((req, res) => void this.#handle(req, res));
  }

  async start(port = 0): Promise<string> {
    await new Promise<void>((resolve) => this.#server.listen(port, '127.0.0.1', resolve));
    return this.url;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/events`;
  }

  /** Every event of every acknowledged batch, in arrival order. */
  get acknowledged(): FeedbackEvent[] {
    return this.batches.filter((b) => b.status >= 200 && b.status < 300).flatMap((b) => b.events);
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const answer = this.answer(++this.#requests);
    if (answer === 'drop') {
      req.socket.destroy();
      return;
    }
    if (answer.delayMs) await new Promise((r) => setTimeout(r, answer.delayMs));
    const expected = Buffer.from(`sha256=${createHmac('sha256', this.#secret).update(body).digest('hex')}`);
    const given = Buffer.from(String(req.headers['x-tern-signature'] ?? ''));
    this.batches.push({
      batchId: String(req.headers['x-tern-batch-id'] ?? ''),
      signatureValid: given.length === expected.length && timingSafeEqual(given, expected),
      events: JSON.parse(body.toString('utf8')) as FeedbackEvent[],
      status: answer.status,
    });
    if (!res.destroyed) res.writeHead(answer.status, { 'content-type': 'text/plain' }).end('ok');
  }
}
