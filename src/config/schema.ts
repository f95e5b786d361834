import { z } from 'zod';
import { isLoopbackListen } from '../lib/net.ts';
import { egress } from './egress.ts';
import { cidr, duration, hostPort, hostname, rate, size, tlsPolicy } from './fields.ts';

/** A deadline or period of 0 would fail every attempt at once (or spin): refused at check-config. */
const positiveDuration = duration.refine((ms) => ms > 0, 'must be longer than 0');

/** Listener limits (src/ingress/smtp/limits.ts); each default follows the Postfix smtpd parameter named. */
const smtpLimits = z.strictObject({
  error_limit: z.number().int().min(1).default(20), // smtpd_hard_error_limit
  junk_command_limit: z.number().int().min(0).default(100), // smtpd_junk_command_limit
  recipient_overshoot_limit: z.number().int().min(0).default(1000), // smtpd_recipient_overshoot_limit
  client_connection_limit: z.number().int().min(0).default(50), // smtpd_client_connection_count_limit
  client_connection_rate: z.number().int().min(0).default(0), // smtpd_client_connection_rate_limit
  auth_failure_limit: z.number().int().min(0).default(10), // (smtpd_client_auth_rate_limit counts every AUTH)
  auth_failure_window: duration.default(900_000),
  session_deadline: positiveDuration.default(1_800_000),
  data_deadline: positiveDuration.default(600_000),
  line_length: z.number().int().min(78).default(998), // RFC 5322 2.1.1 (Postfix's line_length_limit folds at 2048)
  header_size: size.default(1_048_576), // header_size_limit
});

/** "$scrypt$ln=15,r=8,p=1$<base64 salt>$<base64 hash>" (tern auth hash), or a plaintext password. */
const SCRYPT_HASH = /^\$scrypt\$ln=\d{1,2},r=\d{1,2},p=\d{1,2}\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}$/;
const authPassword = z.string().min(1).refine((p) => !p.startsWith('$scrypt$') || SCRYPT_HASH.test(p), 'a "$scrypt$" password must be a hash from `tern auth hash`');

const smtp = z.strictObject({
  listen: z.array(hostPort).min(1).default(['127.0.0.1:2525']),
  max_message_size: size.default(25_000_000),
  max_recipients: z.number().int().min(1).max(100_000).default(1000),
  max_clients: z.number().int().min(1).default(1000),
  allow_networks: z.array(cidr).default(['127.0.0.0/8', '::1/128']),
  auth: z
    .strictObject({
      users: z.array(z.strictObject({ username: z.string().min(1), password: authPassword })).default([]),
      allow_insecure: z.boolean().default(false),
    })
    .default({ users: [], allow_insecure: false }),
  tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
  timeout: positiveDuration.default(300_000),
  banner: z.string().default('Tern'),
  limits: smtpLimits.default(() => smtpLimits.parse({})),
});

const admin = z.strictObject({
  listen: hostPort.default('127.0.0.1:8025'),
  /** Bearer token of every /api/v1 call; required unless the listener is on loopback. */
  token: z.string().regex(/^[\x21-\x7e]*$/, 'must be printable ASCII without spaces (it travels in an HTTP header)').default(''),
  /** GET /readyz fails once an outbox has held events this long with none acknowledged. */
  readiness: z.strictObject({ outbox_stall: positiveDuration.default(900_000) }).default({ outbox_stall: 900_000 }),
  /** Suspensions (kept across restarts) and the audit log of write calls; empty means <spool.dir>/admin. */
  state_dir: z.string().default(''),
}).superRefine((a, ctx) => {
  if (a.token !== '' || isLoopbackListen(a.listen)) return;
  ctx.addIssue({
    code: 'custom', path: ['token'],
    message: `must be set when admin.listen (${a.listen}) is not a loopback address: the admin API can bounce and suspend mail (or set TERN_ADMIN_TOKEN)`,
  });
});

const spool = z.strictObject({
  dir: z.string().min(1).default('./var/spool'),
  /** Ingress answers 452 4.3.1 below this much free disk. */
  min_free: size.default(100_000_000),
  /** Messages up to this size share the segment log; larger ones are streamed to a file each. */
  inline_max: size.default(1_048_576).refine((n) => n <= 64 * 1_048_576, 'must be at most 64MiB'),
  /** A segment file is sealed at this size and deleted once every message in it is done. */
  segment_size: size.default(64 * 1_048_576).refine((n) => n >= 1_048_576, 'must be at least 1MiB'),
  /** Memory for recently accepted bodies, so first delivery attempts read nothing back from disk. */
  body_cache: size.default(32 * 1_048_576),
});

const dns = z.strictObject({
  servers: z.array(hostPort.or(z.string().regex(/^[0-9a-f:.]+$/i))).default([]),
  timeout: positiveDuration.default(3_000),
  attempts: z.number().int().min(1).max(10).default(2),
  negative_ttl: duration.default(300_000),
  cache_size: z.number().int().min(16).default(50_000),
});

const retry = z.strictObject({
  base: positiveDuration.default(1_200_000),
  max: positiveDuration.default(21_600_000),
  jitter: z.number().min(0).max(1).default(0.1),
});

const timeouts = z.strictObject({
  connect: positiveDuration.default(30_000),
  greeting: positiveDuration.default(60_000),
  command: positiveDuration.default(120_000),
  data: positiveDuration.default(600_000),
  /** 0: close a connection as soon as its path has nothing more for it. */
  idle: duration.default(5_000),
});

/** MTA-STS (RFC 8461): recipient domains' published TLS policies, found, fetched and applied (docs/tls.md). */
const mtaSts = z.strictObject({
  enabled: z.boolean().default(true),
  /** Where policy hosts are asked over HTTPS: 443; another port only in a test set-up. */
  port: z.number().int().min(1).max(65_535).default(443),
  /** The whole policy fetch (connect, TLS, answer) within this. */
  timeout: positiveDuration.default(10_000),
  /** The policies' cache; empty: <spool.dir>/tls-policy. */
  state_dir: z.string().default(''),
});

/** TLS-RPT (RFC 8460): daily aggregate reports of sessions under receivers' policies, to the domains that ask. */
const tlsRpt = z.strictObject({
  enabled: z.boolean().default(false),
  /** The report's organization-name; empty: hostname. */
  organization: z.string().max(200).default(''),
  /** The report's contact-info; empty: mailto:postmaster@<hostname>. */
  contact: z.string().max(200).default(''),
  /** The sender of mailed reports; empty: tlsrpt-noreply@<hostname>. */
  from: z.string().max(320).default(''),
});

const delivery = z.strictObject({
  port: z.number().int().min(1).max(65_535).default(25),
  validity: positiveDuration.default(259_200_000),
  retry: retry.default({ base: 1_200_000, max: 21_600_000, jitter: 0.1 }),
  timeouts: timeouts.default({ connect: 30_000, greeting: 60_000, command: 120_000, data: 600_000, idle: 5_000 }),
  /** Messages held in memory for delivery at once; the rest wait on disk. */
  max_active: z.number().int().min(1).default(10_000),
  /** Recipients of those messages loaded at once (a message larger than this still goes alone). */
  max_active_recipients: z.number().int().min(1).default(50_000),
  /** The TLS level of every path no MX rule names (shaping.defaults.tls overrides it): none, may, encrypt, verify (docs/tls.md). */
  tls: tlsPolicy.default('may'),
  /** PEM CA certificates that level verify trusts instead of the system's; unset: the system CAs. */
  tls_ca_file: z.string().min(1).optional(),
  mta_sts: mtaSts.default(() => mtaSts.parse({})),
  /**
   * DANE (RFC 7672): TLSA records of MX hosts that a validating resolver vouches for (the AD bit)
   * decide their TLS. Without a validating resolver in dns.servers, nothing is vouched for.
   */
  dane: z.boolean().default(true),
  tls_rpt: tlsRpt.default(() => tlsRpt.parse({})),
});

const dkimKey = z.strictObject({
  domain: hostname,
  selector: z.string().regex(/^[a-z0-9._-]+$/i, { message: 'must be a DNS label such as s2026' }),
  key_file: z.string().min(1),
  algorithm: z.enum(['rsa-sha256', 'ed25519-sha256']).default('rsa-sha256'),
  /** Also sign mail whose From domain has no key of its own (and no configured parent). */
  fallback: z.boolean().default(false),
});


/**
 * What an MX rule may set for a destination (docs/shaping.md). Every key is optional here: a
 * rule sets only what it changes, and the layer below it (site, provider, defaults) fills in.
 */
export const pathSettingFields = {
  max_connections: z.number().int().min(1).max(10_000).optional(),
  max_messages_per_connection: z.number().int().min(1).max(1_000_000).optional(),
  max_message_rate: rate.optional(),
  max_connection_rate: rate.optional(),
  max_recipients_per_message: z.number().int().min(1).max(100_000).optional(),
  connect_timeout: positiveDuration.optional(),
  greeting_timeout: positiveDuration.optional(),
  idle_timeout: positiveDuration.optional(),
  /** encrypt, verify: no STARTTLS, a failed handshake (or, for verify, certificate) means no delivery, never plaintext (docs/tls.md). */
  tls: tlsPolicy.optional(),
};

const shaping = z.strictObject({
  /** The bottom layer of the MX rules; timeouts and TLS default to delivery.timeouts / delivery.tls. */
  defaults: z.strictObject({
    ...pathSettingFields,
    max_connections: z.number().int().min(1).max(10_000).default(10),
    max_messages_per_connection: z.number().int().min(1).max(1_000_000).default(100),
    max_recipients_per_message: z.number().int().min(1).max(100_000).default(100),
  }).default({ max_connections: 10, max_messages_per_connection: 100, max_recipients_per_message: 100 }),
  /** Operator MX rules (providers, sites, domains, adaptive), tried before Tern's own. */
  rules_file: z.string().min(1).optional(),
  /** false: Tern's shipped rules (src/shaping/default-rules.yaml) are not loaded. */
  default_rules: z.boolean().default(true),
  /** Where adaptive state is kept across restarts; empty means <spool.dir>/shaping. */
  state_dir: z.string().default(''),
});

const webhook = z.strictObject({
  url: z.url().refine((u) => /^https?:\/\//i.test(u), 'must be an http:// or https:// URL'),
  /** HMAC-SHA256 key for X-Tern-Signature; empty still signs, with an empty key. */
  secret: z.string().default(''),
  max_batch: z.number().int().min(1).max(10_000).default(500),
  max_wait: duration.default(1_000),
  timeout: positiveDuration.default(10_000),
  /** Batches in flight at once; one recipient's events always share a lane, so stay in order. */
  concurrency: z.number().int().min(1).max(64).default(4),
  backoff_max: duration.default(600_000),
});

const feedback = z.strictObject({
  /** The outbox and KPI snapshot; empty means <spool.dir>/feedback. */
  dir: z.string().default(''),
  webhook: webhook.optional(),
  /** More endpoints; each receives every event and acknowledges on its own. */
  webhooks: z.array(webhook).default([]),
  /** Events older than this are dropped (and counted) instead of sent. */
  retention: duration.default(7 * 86_400_000),
  /** Disk for waiting events; past it the oldest are dropped, loudly. */
  max_disk: size.default(1_073_741_824),
  log: z.strictObject({
    path: z.string().min(1),
    max_size: size.default(104_857_600),
    keep: z.number().int().min(1).max(100).default(5),
  }).optional(),
  /** Each campaign's delivery log for the dashboard (docs/dashboard.md); keep 0s turns it off. */
  campaign_log: z.strictObject({ keep: duration.default(3 * 86_400_000) }).default({ keep: 3 * 86_400_000 }),
}).superRefine((f, ctx) => {
  // Each endpoint's outbox is named after its URL: two endpoints with one URL would share it.
  const seen = new Set(f.webhook ? [f.webhook.url] : []);
  f.webhooks.forEach((w, i) => {
    if (seen.has(w.url)) ctx.addIssue({ code: 'custom', path: ['webhooks', i, 'url'], message: `"${w.url}" is already an endpoint` });
    seen.add(w.url);
  });
});

/** Suppression (docs/bounces.md): opt-in; addresses that hard-bounced or complained are refused at RCPT. */
const suppression = z.strictObject({
  enabled: z.boolean().default(false),
  /** How long an address stays suppressed after its last hard bounce or complaint. */
  period: positiveDuration.default(90 * 86_400_000),
  /** The list across restarts; empty means <spool.dir>/suppression. */
  state_dir: z.string().default(''),
});

const bounce = z.strictObject({
  /** Operator rules (same format as src/bounce/default-rules.yaml), tried before the defaults. */
  rules_file: z.string().min(1).optional(),
  /**
   * Asynchronous bounces (docs/bounces.md): the domain of the VERP return path Tern puts in MAIL
   * FROM, whose mail (DSNs, complaints) comes back to `listen`. None: MAIL FROM is the client's.
   */
  domain: hostname.optional(),
  listen: z.array(hostPort).min(1).default(['127.0.0.1:2526']),
  /** HMAC key that signs each return path, so a forged one is refused. */
  secret: z.string().default(''),
  /** How long after sending a bounce is still matched to its message. */
  keep: positiveDuration.default(7 * 86_400_000),
}).superRefine((b, ctx) => {
  if (b.domain && b.secret.length < 16) ctx.addIssue({ code: 'custom', path: ['secret'], message: 'must be at least 16 characters when bounce.domain is set: it signs the return paths' });
});

const tuning = z.strictObject({
  /** Niceness of the helper threads (libuv's pool: signing, fsync; V8's: GC, JIT), on Linux; 0 leaves it. */
  pool_nice: z.number().int().min(0).max(19).default(19),
  /** Also run them SCHED_IDLE (Linux, util-linux's chrt): they never pre-empt the event loop. */
  pool_idle: z.boolean().default(true),
  /**
   * Shards: event loops (worker threads) that each run the whole pipeline over their own part of
   * the spool (ADR 0010). 1 is a single loop in the main thread; "auto" is the CPUs available less one.
   */
  threads: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default('auto'),
});

/**
 * A fleet (docs/scaling.md): several nodes that share the receivers' limits through Redis. None:
 * a single node, as before.
 */
const cluster = z.strictObject({
  /** redis://[user:password@]host:port[/db] or rediss:// (TLS). */
  redis: z.string().regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL').optional(),
  /** Every key Tern writes starts with this, so fleets (or other users) can share one Redis. */
  prefix: z.string().regex(/^[\w:.-]{1,64}$/, 'must be 1-64 letters, digits, or : . _ -').default('tern:'),
  /** This node's name in the fleet, events and metrics; empty means `hostname`. */
  node: z.string().regex(/^[\w.-]{0,64}$/, 'must be up to 64 letters, digits, or . _ -').default(''),
});

const log = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
});

export const configSchema = z.strictObject({
  hostname: hostname.default('localhost'),
  smtp: smtp.default(() => smtp.parse({})),
  admin: admin.default(() => admin.parse({})),
  spool: spool.default(() => spool.parse({})),
  dns: dns.default(() => dns.parse({})),
  delivery: delivery.default(() => delivery.parse({})),
  dkim: z.strictObject({ keys: z.array(dkimKey).default([]) }).default({ keys: [] }),
  shaping: shaping.default(() => shaping.parse({})),
  feedback: feedback.default(() => feedback.parse({})),
  egress: egress.default(() => egress.parse({})),
  bounce: bounce.default(() => bounce.parse({})),
  suppression: suppression.default(() => suppression.parse({})),
  log: log.default({ level: 'info' }),
  tuning: tuning.default(() => tuning.parse({})),
  cluster: cluster.default(() => cluster.parse({})),
});

export type Config = z.output<typeof configSchema>;
export type SmtpConfig = Config['smtp'];
export type DeliveryConfig = Config['delivery'];
export type DnsConfig = Config['dns'];
export type SpoolConfig = Config['spool'];
export type ShapingDefaults = Config['shaping']['defaults'];
