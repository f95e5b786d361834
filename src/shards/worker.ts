/**
 * A shard (ADR 0010): the whole per-message pipeline over its own partition, in a worker thread.
 * The coordinator (src/shards/threads.ts) starts it with its settings and a port to the shaper,
 * then drives it by requests (src/shards/rpc.ts). Keys and bounce rules are read here, so no key
 * material crosses threads.
 */
import type { QueueId } from '../model/ids.ts';
import type { Selector } from '../model/selector.ts';
import type { Suspension } from '../model/suspension.ts';
import type { SuppressionChange } from '../model/suppression.ts';
import { type MessagePort, parentPort, workerData } from 'node:worker_threads';
import { pino, type DestinationStream } from 'pino';
import { classifyReplies, createClassifier, loadBounceRules } from '../bounce/index.ts';
import type { Config } from '../config/index.ts';
import { createSigner, loadKeys } from '../dkim/index.ts';
import type { EventLog, KpiScope } from '../feedback/index.ts';
import { systemClock } from '../lib/clock.ts';
import { createMetrics } from '../metrics/index.ts';
import type { FeedbackEvent } from '../model/event.ts';
import { createPipeline } from '../pipeline.ts';
import type { Change } from '../shaping/index.ts';
import { RemoteShaping } from '../shaping/remote.ts';
import { levelledLogger } from '../lib/log-level.ts';
import { answer } from './rpc.ts';
import { queueView } from './shards.ts';

/** What a shard is started with. */
export interface ShardData {
  readonly config: Config;
  readonly shard: number;
  readonly threads: number;
  readonly level: string;
  /** Log lines go to the coordinator (which hands them to whoever asked) instead of stdout. */
  readonly forwardLogs: boolean;
  readonly shaping: MessagePort;
}

/** One-way messages from a shard, besides answers. */
export type ShardNote =
  | { readonly t: 'log'; readonly line: string }
  | { readonly t: 'events'; readonly events: readonly FeedbackEvent[] }
  | { readonly t: 'suppress'; readonly domain: string; readonly address: string; readonly detail: string };

const port = parentPort;
if (!port) throw new Error('src/shards/worker.ts runs in a worker thread started by the coordinator');
const data = workerData as ShardData;
const { config, shard, threads } = data;
const note = (m: ShardNote): void => port.postMessage(m);
// One write(2) a line (pino's sync destination): lines of several shards on one stdout do not interleave.
const destination: DestinationStream = data.forwardLogs ? { write: (line: string) => note({ t: 'log', line }) } : pino.destination({ fd: 1, sync: true });
const { log, setLevel: setLogLevel } = levelledLogger({ level: data.level, base: { service: 'tern', shard }, timestamp: pino.stdTimeFunctions.isoTime }, destination);

const keys = loadKeys(config.dkim.keys);
const bounce = loadBounceRules(config.bounce.rules_file);
const problems = [...keys.problems, ...bounce.problems];
if (problems.length > 0) throw new Error(problems.map((p) => `${p.path}: ${p.problem}`).join('; '));
const metrics = createMetrics('shard', `shard-${shard}`);
const signer = createSigner(keys.keys, (algorithm, seconds) => metrics.dkimSeconds.labels({ algorithm }).observe(seconds));
const shaping = new RemoteShaping(data.shaping, systemClock);
// The event log is one file, written by the coordinator.
const eventLog: EventLog | undefined = config.feedback.log
  ? { write: (events) => Promise.resolve(note({ t: 'events', events })), close: () => Promise.resolve() }
  : undefined;
const pipeline = createPipeline(
  config,
  {
    clock: systemClock, log, metrics, signer, classify: classifyReplies(createClassifier(bounce.rules)), shaping,
    suppress: (domain, address, detail) => note({ t: 'suppress', domain, address, detail }),
  },
  { shard, threads, ...(eventLog ? { eventLog } : {}) },
);

answer(port, {
  recover: () => pipeline.recover(),
  run: () => pipeline.run(),
  listen: async (addresses) => {
    await pipeline.listen(addresses as { host: string; port: number }[] | undefined);
    return pipeline.smtpAddresses();
  },
  drain: (graceMs) => pipeline.drain(graceMs as number),
  'close-ingress': () => pipeline.closeIngress(),
  close: async () => {
    await pipeline.close();
    shaping.close();
    metrics.loopDelay.stop();
  },
  changed: (arg) => {
    const { change, path } = arg as { change: Change; path: string };
    pipeline.shapingChanged(change, path);
  },
  suspensions: (list) => pipeline.setSuspensions(list as Suspension[]),
  flush: (selector) => pipeline.flush(selector as Selector),
  bounce: (arg) => {
    const { selector, reason } = arg as { selector: Selector; reason: string };
    return pipeline.bounce(selector, reason);
  },
  message: (id) => pipeline.message(id as QueueId),
  'log-level': (level) => setLogLevel(level as string),
  webhooks: (feedback) => pipeline.setWebhooks(feedback as Config['feedback']),
  suppression: (change) => pipeline.suppressionChanged(change as SuppressionChange),
  record: (events) => pipeline.feedback.record(events as FeedbackEvent[]),
  'reload-keys': () => {
    const fresh = loadKeys(config.dkim.keys);
    if (fresh.problems.length > 0) log.error({ problems: fresh.problems }, 'reload: DKIM keys not replaced in this shard; the previous keys stay in use');
    else signer.setKeys(fresh.keys);
  },
  metrics: () => {
    pipeline.refreshGauges();
    return metrics.registry.getMetricsAsJSON();
  },
  queue: () => queueView(pipeline),
  readiness: () => pipeline.readiness(),
  kpiList: (arg) => pipeline.feedback.kpiList((arg as { scope: KpiScope }).scope),
  kpi: (arg) => {
    const { scope, id } = arg as { scope: KpiScope; id: string };
    return pipeline.feedback.kpi(scope, id);
  },
  pools: () => pipeline.delivery.pools(),
  queued: () => pipeline.queue.queuedByPath(),
});
