import { fileURLToPath } from 'node:url';
import { z } from 'zod';

/*
 * Configuration of `edgeloop serve`. Every setting has a default; each can be set with a flag
 * (`--http-port 8081`, `--ingest-batch-size=300`) or an environment variable
 * (`EDGELOOP_HTTP_PORT`, `EDGELOOP_INGEST_BATCH_SIZE`). Flags win over the environment.
 * `loadConfig` lists every problem at once and returns a frozen object.
 */

const Port = z.coerce.number().int().min(0).max(65_535);
const PositiveInt = z.coerce.number().int().positive();
const PositiveNumber = z.coerce.number().positive();
const Ratio = z.coerce.number().gt(0).max(1);

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

export const IngestConfig = z.object({
  /** Rows written per transaction at most; a flush starts as soon as this many are queued. */
  batchSize: PositiveInt.max(5_000).default(256),
  /**
   * A partly filled batch is flushed after this many milliseconds; 0 flushes on the next turn of
   * the event loop (everything read from the sockets in one turn commits together).
   */
  flushIntervalMs: z.coerce.number().int().min(0).max(10_000).default(0),
  /** Above this queue depth the broker stops reading publishers' sockets until rows are stored. */
  highWater: PositiveInt.default(5_000),
  /** Above this queue depth QoS 0 telemetry is dropped (counted, reason `overload`). */
  hardCap: PositiveInt.default(20_000),
  /** Recently stored (device, msgId) pairs kept in memory to skip the database on a resend. */
  dedupeCacheSize: z.coerce.number().int().min(0).default(20_000),
});
export type IngestConfig = z.infer<typeof IngestConfig>;

export const HealthConfig = z.object({
  /** How often the sweeper looks for silent devices. */
  sweepIntervalMs: PositiveInt.default(1_000),
  /** Added to max(1.5 x keepalive, 3 x telemetry interval) before a silent device is offline. */
  heartbeatGraceS: z.coerce.number().min(0).default(5),
  /** Assumed until a device reports its own keepalive / telemetry interval. */
  defaultKeepaliveS: PositiveNumber.default(60),
  defaultTelemetryIntervalS: PositiveNumber.default(10),
  /** Telemetry older than this many intervals (plus grace) is stale. */
  staleIntervals: PositiveNumber.default(3),
  highTemperatureC: z.coerce.number().default(85),
  diskNearlyFullRatio: Ratio.default(0.9),
  memoryPressureRatio: Ratio.default(0.92),
  /** No successful inference for this long (device clock) while frames arrive: stalled. */
  inferenceStallS: PositiveNumber.default(60),
});
export type HealthConfig = z.infer<typeof HealthConfig>;

export const RetentionConfig = z.object({
  messagesDays: PositiveNumber.default(14),
  deadLettersDays: PositiveNumber.default(14),
  /** Audit log entries older than this are pruned; 0 keeps them for good. */
  auditDays: z.coerce.number().min(0).default(365),
  pruneIntervalS: PositiveNumber.default(3_600),
});
export type RetentionConfig = z.infer<typeof RetentionConfig>;

/** console/dist beside this package: `npm install` builds it there (the control plane never imports the console). */
const DEFAULT_CONSOLE_DIR = fileURLToPath(new URL('../../console/dist', import.meta.url));

export const HttpConfig = z.object({
  /** Largest request body accepted (413 above). */
  bodyLimitBytes: PositiveInt.default(1024 * 1024),
  /** Seconds between SSE heartbeat comments. */
  sseHeartbeatS: PositiveNumber.default(15),
  /** The built console served at `/` (this repository's console/dist by default); '' serves no console. */
  consoleDir: z.string().default(DEFAULT_CONSOLE_DIR),
});
export type HttpConfig = z.infer<typeof HttpConfig>;

export const CommandConfig = z.object({
  defaultTimeoutMs: PositiveInt.default(10_000),
  maxTimeoutMs: PositiveInt.default(120_000),
});
export type CommandConfig = z.infer<typeof CommandConfig>;

export const ModelsConfig = z.object({
  /** Largest model upload (the ONNX file plus its release); 413 above. Default 1 GiB. */
  uploadLimitBytes: PositiveInt.default(1024 * 1024 * 1024),
});
export type ModelsConfig = z.infer<typeof ModelsConfig>;

export const RolloutsConfig = z.object({
  /** How often the rollout engine reconciles (gates are evaluated at each rollout's own interval). */
  tickMs: PositiveInt.min(50).max(60_000).default(1_000),
  /** How often a replica that is not the leader tries to take the leader lock (PostgreSQL). */
  leaderRetryMs: PositiveInt.min(100).default(5_000),
  /**
   * How long a model assignment in desired state stays valid (its expiresAt); the control plane
   * refreshes it when a third of this is left, and an agent ignores an expired one. Default 7 days.
   */
  assignmentTtlHours: PositiveNumber.max(24 * 365).default(168),
});
export type RolloutsConfig = z.infer<typeof RolloutsConfig>;

/** Drift detection and adaptive sampling (drift/). */
export const DriftConfig = z.object({
  /** The default reference: the first this-many seconds after a model was first seen at a site or device. */
  referenceS: PositiveInt.default(86_400),
  /** Current windows: consecutive slices of this many seconds, judged when they close. */
  windowS: PositiveInt.min(1).default(300),
  /** PSI at or above which a window is moderate. */
  psiModerate: PositiveNumber.default(0.1),
  /** PSI at or above which a window is major. */
  psiMajor: PositiveNumber.default(0.25),
  /** A near-threshold share this much above the reference's lifts a stable window to moderate. */
  nearThresholdDelta: PositiveNumber.max(1).default(0.1),
  /** A scene-change rate (share of telemetry messages) this much above the reference's lifts stable to moderate. */
  sceneChangeDelta: PositiveNumber.max(1).default(0.2),
  /** Windows (and references) with fewer detections are not judged. */
  minDetections: PositiveInt.default(100),
  /** How often closed windows are looked for. */
  tickMs: PositiveInt.min(50).max(60_000).default(5_000),
  /** Adaptive sampling: the factor a drifting site's sampling is raised by (1 turns it off). */
  samplingFactor: PositiveNumber.min(1).max(100).default(2),
  /** Adaptive sampling: windows at moderate or worse before it is raised, stable ones before it is restored. */
  samplingWindows: PositiveInt.max(1_000).default(2),
  /** Devices (not stable, worst first) exported in the drift gauges; sites are always exported. */
  deviceGauges: z.coerce.number().int().min(0).max(10_000).default(100),
});
export type DriftConfig = z.infer<typeof DriftConfig>;

/** The retraining trigger loop and its webhook deliveries (retraining/). */
export const RetrainingConfig = z.object({
  /** How often retraining policies are evaluated (on the leader). */
  intervalS: PositiveInt.max(86_400).default(60),
  /** How often due webhook attempts are looked for. */
  pollMs: PositiveInt.min(50).max(60_000).default(1_000),
  /** One webhook attempt without an answer in this long fails (and is retried). */
  webhookTimeoutS: PositiveInt.max(300).default(10),
  /** Attempts before a run is failed. */
  maxAttempts: PositiveInt.max(100).default(8),
  /** The first retry waits about this long; each one doubles it (with jitter). */
  backoffBaseS: PositiveNumber.max(3_600).default(10),
  /** No retry waits longer than this. */
  backoffMaxS: PositiveNumber.max(86_400).default(900),
  /** Webhook attempts in flight at once. */
  concurrency: PositiveInt.max(64).default(4),
});
export type RetrainingConfig = z.infer<typeof RetrainingConfig>;

export const SamplesConfig = z.object({
  /** Largest sample image a device may upload; 413 above. Default 10 MiB. */
  maxBytes: PositiveInt.default(10 * 1024 * 1024),
  /** Samples older than this are pruned (unless a dataset version holds them); 0 keeps them. */
  retentionDays: z.coerce.number().min(0).default(90),
  /** Image bytes the fleet may keep; past it the oldest unreferenced samples go first. 0: no quota. */
  quotaBytes: z.coerce.number().int().min(0).default(0),
  /** An upload not touched for this long is discarded with its partial bytes. */
  uploadExpiryHours: PositiveNumber.default(24),
  /** Width of the thumbnails served (JPEG). */
  thumbnailWidth: PositiveInt.max(2048).default(256),
});
export type SamplesConfig = z.infer<typeof SamplesConfig>;

/**
 * The MQTT front: limits applied to every socket before the broker reads a packet (mqtt-front.ts).
 * A device that stays connected costs nothing here; a peer that has not logged in costs at most
 * `maxConnectBytes` of buffer and one pending slot until `connectDeadlineMs`.
 */
export const MqttConfig = z.object({
  /** Open MQTT sockets at most (logged in or not); past it new sockets are closed at accept. */
  maxConnections: PositiveInt.default(10_000),
  /** Sockets that have not logged in yet, at most; past it new sockets are closed at accept. */
  maxPendingConnections: PositiveInt.default(1_000),
  /** A socket must have logged in (CONNECT accepted) within this many milliseconds of accept. */
  connectDeadlineMs: PositiveInt.min(100).max(300_000).default(10_000),
  /** Connection attempts per second per source address that do not end logged in (refilled rate). */
  connectRatePerAddress: PositiveNumber.default(20),
  /** Attempts an address may make at once before the rate applies (token bucket size). */
  connectBurstPerAddress: PositiveInt.default(200),
  /** Largest packet before login (the CONNECT): remaining length in bytes. Default 16 KiB. */
  maxConnectBytes: PositiveInt.min(512)
    .max(1024 * 1024)
    .default(16 * 1024),
  /**
   * Largest packet after login (remaining length): the 256 KiB payload limit plus room for the
   * topic. A larger one closes the socket; one between the payload limit and this is dead-lettered.
   */
  maxPacketBytes: PositiveInt.min(1024)
    .max(256 * 1024 * 1024)
    .default(256 * 1024 + 8 * 1024),
});
export type MqttConfig = z.infer<typeof MqttConfig>;

export const IdempotencyConfig = z.object({
  /** How long an Idempotency-Key and its stored response are kept (the IETF draft suggests 24 h). */
  ttlHours: PositiveNumber.max(24 * 30).default(24),
  /** A response larger than this is not stored for replay (its key is given back). */
  maxResponseBytes: PositiveInt.max(16 * 1024 * 1024).default(64 * 1024),
  /** A key whose request has not finished after this long (its process died) may be used again. */
  inFlightTimeoutS: PositiveNumber.default(600),
});
export type IdempotencyConfig = z.infer<typeof IdempotencyConfig>;

/** `GET /readyz` and the disk watermark (readiness.ts, disk-monitor.ts). */
export const ReadinessConfig = z.object({
  /** How often free disk is read (statfs) and the readiness checks are refreshed (their gauges). */
  intervalMs: PositiveInt.min(100).max(60_000).default(2_000),
  /** Ingest is not ready while a batch failed to commit within this many seconds. */
  flushErrorWindowS: PositiveNumber.default(30),
  /** Retry-After (seconds) of the 507 answers below the disk watermark. */
  retryAfterS: PositiveInt.max(3_600).default(30),
});
export type ReadinessConfig = z.infer<typeof ReadinessConfig>;

/**
 * How an external broker (--broker-url) checks device logins: `dynsec`, Mosquitto 2's dynamic
 * security plugin, which the control plane provisions (a client and a role per device);
 * `http-hooks`, the broker asks our HTTP hooks (EMQX; EDGELOOP_BROKER_HOOK_SECRET) and nothing is
 * provisioned.
 */
export const BROKER_AUTH_MODES = ['dynsec', 'http-hooks'] as const;

/** What the start checks of the SQLite file: `PRAGMA quick_check`, `integrity_check`, or nothing (very large files). */
export const INTEGRITY_CHECKS = ['quick', 'full', 'off'] as const;

export const Config = z.object({
  httpPort: Port.default(8080),
  mqttPort: Port.default(1883),
  host: z.string().min(1).default('0.0.0.0'),
  /** Host name devices are told to connect to at enrollment; defaults to `host` (or localhost). */
  publicHost: z.string().min(1).optional(),
  dataDir: z.string().min(1).default('./data'),
  /** PostgreSQL instead of the embedded SQLite file (postgres://user@host:5432/db). */
  databaseUrl: z
    .string()
    .regex(/^postgres(ql)?:\/\//, 'the database URL must start with postgres:// or postgresql://')
    .optional(),
  /** Bootstrap admin token; when absent one is generated once and printed. */
  adminToken: z.string().min(16, 'admin token must be at least 16 characters').optional(),
  /**
   * The secret an external broker sends (as a bearer token) to the HTTP authentication and ACL
   * hooks (/api/v1/broker/*, EMQX's HTTP authenticator and authorizer); absent: no hooks.
   */
  brokerHookSecret: z.string().min(24, 'the broker hook secret must be at least 24 characters').optional(),
  /**
   * An external MQTT 5 broker (mqtt://host:port) instead of the embedded one: the MQTT listeners
   * are off, replicas split the ingest through a shared subscription, devices log in there.
   */
  brokerUrl: z
    .string()
    .regex(/^mqtt:\/\/[^/?#]+\/?$/, 'the broker URL must be mqtt://host:port (plain MQTT; no path)')
    .optional(),
  /** The URL devices are told at enrollment when they reach the broker at another address (mqtt:// or mqtts://). */
  brokerPublicUrl: z
    .string()
    .regex(/^mqtts?:\/\/[^/?#]+\/?$/, 'the broker public URL must be mqtt://host:port or mqtts://host:port')
    .optional(),
  /** The control plane's user on the external broker (every replica logs in as it). */
  brokerUsername: z.string().min(1).default('edgeloop'),
  /** Its password (EDGELOOP_BROKER_PASSWORD only). */
  brokerPassword: z.string().min(1).optional(),
  /** dynsec: provision devices on Mosquitto's dynamic security; http-hooks: the broker asks our hooks. */
  brokerAuth: z.enum(BROKER_AUTH_MODES).default('dynsec'),
  /**
   * This replica's name: the client id of its persistent ingest session on the external broker
   * (unacknowledged messages wait there for it). Default: derived from the host name and the data dir.
   */
  replicaId: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'the replica id is 1-64 characters of letters, digits, ".", "_" and "-"')
    .optional(),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  /**
   * Public keys model releases must be signed with: comma-separated paths of `.pub` PEM files or
   * of directories holding them. Without any, model uploads are refused (no_trusted_keys).
   */
  trustedKeys: z.string().optional(),
  /** SQLite integrity check at start: quick (PRAGMA quick_check), full (integrity_check) or off. */
  integrityCheck: z.enum(INTEGRITY_CHECKS).default('quick'),
  /**
   * Free disk of the data directory, in MiB, at or below which writes wait: uploads and other API
   * writes answer 507 with Retry-After, ingest holds publishers (no PUBACK) and /readyz is 503.
   */
  minFreeDiskMb: z.coerce.number().min(0).default(64),
  /**
   * Port of the MQTT TLS listener (mqtts; 0 picks a free port); absent: none. It needs --tls-cert and
   * --tls-key, and asks devices for a certificate when the data dir holds a fleet CA (edgeloop ca init).
   */
  mqttTlsPort: Port.optional(),
  /** PEM certificate (chain) of the HTTPS API and the MQTT TLS listener; with --tls-key the API serves HTTPS. Reloaded on SIGHUP. */
  tlsCert: z.string().min(1).optional(),
  /** PEM private key of --tls-cert. Reloaded on SIGHUP. */
  tlsKey: z.string().min(1).optional(),
  /**
   * A device timestamp more than this many seconds after the control plane's receive time (or
   * before 2020) is stored with the flag clockSkew; history never sorts by it (it is data).
   */
  clockSkewMaxS: PositiveInt.default(86_400),
  ingest: IngestConfig.default(IngestConfig.parse({})),
  health: HealthConfig.default(HealthConfig.parse({})),
  retention: RetentionConfig.default(RetentionConfig.parse({})),
  http: HttpConfig.default(HttpConfig.parse({})),
  commands: CommandConfig.default(CommandConfig.parse({})),
  models: ModelsConfig.default(ModelsConfig.parse({})),
  rollouts: RolloutsConfig.default(RolloutsConfig.parse({})),
  samples: SamplesConfig.default(SamplesConfig.parse({})),
  drift: DriftConfig.default(DriftConfig.parse({})),
  retraining: RetrainingConfig.default(RetrainingConfig.parse({})),
  mqtt: MqttConfig.default(MqttConfig.parse({})),
  idempotency: IdempotencyConfig.default(IdempotencyConfig.parse({})),
  readiness: ReadinessConfig.default(ReadinessConfig.parse({})),
});
export type Config = z.infer<typeof Config>;
export type ConfigInput = z.input<typeof Config>;

/** Flags and variables of the top-level settings; nested ones follow `--section-key` / `EDGELOOP_SECTION_KEY`. */
const TOP_LEVEL_KEYS = [
  'httpPort',
  'mqttPort',
  'host',
  'publicHost',
  'dataDir',
  'databaseUrl',
  'adminToken',
  'brokerHookSecret',
  'brokerUrl',
  'brokerPublicUrl',
  'brokerUsername',
  'brokerPassword',
  'brokerAuth',
  'replicaId',
  'logLevel',
  'trustedKeys',
  'integrityCheck',
  'minFreeDiskMb',
  'mqttTlsPort',
  'tlsCert',
  'tlsKey',
  'clockSkewMaxS',
] as const;
const SECTIONS = {
  ingest: IngestConfig,
  health: HealthConfig,
  retention: RetentionConfig,
  http: HttpConfig,
  commands: CommandConfig,
  models: ModelsConfig,
  rollouts: RolloutsConfig,
  samples: SamplesConfig,
  drift: DriftConfig,
  retraining: RetrainingConfig,
  mqtt: MqttConfig,
  idempotency: IdempotencyConfig,
  readiness: ReadinessConfig,
} as const;

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

function envName(path: readonly string[]): string {
  return `EDGELOOP_${path.map((part) => kebab(part).replace(/-/g, '_').toUpperCase()).join('_')}`;
}

/** A setting, its flag (null: environment only) and its environment variable. */
type Setting = { readonly path: readonly string[]; readonly flag: string | null; readonly env: string };

/** Secrets are read from the environment only: a flag would show them in `ps`. */
const ENV_ONLY: ReadonlySet<string> = new Set(['adminToken', 'brokerHookSecret', 'brokerPassword']);

/** Every setting with its flag and environment variable, for `--help` and the README. */
export const SETTINGS: readonly Setting[] = [
  ...TOP_LEVEL_KEYS.map((key) => ({
    path: [key],
    flag: ENV_ONLY.has(key) ? null : `--${kebab(key)}`,
    env: envName([key]),
  })),
  ...Object.entries(SECTIONS).flatMap(([section, schema]) =>
    Object.keys(schema.shape).map((key) => ({
      path: [section, key],
      flag: `--${kebab(section)}-${kebab(key)}`,
      env: envName([section, key]),
    })),
  ),
];

export class ConfigError extends Error {
  readonly code = 'invalid_config';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export type LoadConfigOptions = {
  /** Arguments after the command name (`serve`), e.g. `['--http-port', '0']`. */
  readonly argv?: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Values that win over flags and environment (tests, the demo script). */
  readonly overrides?: ConfigInput;
};

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    if (typeof next === 'object' && next !== null) {
      node = next as Record<string, unknown>;
    } else {
      const created: Record<string, unknown> = {};
      node[part] = created;
      node = created;
    }
  }
  node[path[path.length - 1]!] = value;
}

function mergeInto(target: Record<string, unknown>, source: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(source)) {
    if (value === undefined) continue;
    const existing = target[key];
    if (
      typeof value === 'object' &&
      value !== null &&
      !Array.isArray(value) &&
      typeof existing === 'object' &&
      existing !== null
    ) {
      mergeInto(existing as Record<string, unknown>, value as Record<string, unknown>);
    } else {
      target[key] = value;
    }
  }
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** What is wrong with the external broker settings together (each one alone passed its schema). */
function brokerProblems(config: Config): string[] {
  const problems: string[] = [];
  if (config.brokerUrl === undefined) {
    if (config.brokerPublicUrl !== undefined) problems.push('--broker-public-url needs --broker-url');
    return problems;
  }
  if (config.brokerPassword === undefined) {
    problems.push(
      "--broker-url needs the control plane's broker password in EDGELOOP_BROKER_PASSWORD (environment only: a flag would show it in ps)",
    );
  }
  if (config.mqttTlsPort !== undefined) {
    problems.push("--mqtt-tls-port is the embedded broker's TLS listener, which is off with --broker-url");
  }
  if (config.brokerAuth === 'http-hooks' && config.brokerHookSecret === undefined) {
    problems.push(
      '--broker-auth http-hooks needs EDGELOOP_BROKER_HOOK_SECRET (the secret the broker sends to the hooks)',
    );
  }
  return problems;
}

/**
 * Builds the configuration from flags, environment and overrides. Throws a ConfigError that lists
 * every problem (unknown flags, missing values, out-of-range numbers) at once.
 */
export function loadConfig(options: LoadConfigOptions = {}): Readonly<Config> {
  const { argv = [], env = {}, overrides = {} } = options;
  const problems: string[] = [];
  const raw: Record<string, unknown> = {};
  const byFlag = new Map(SETTINGS.flatMap((setting) => (setting.flag ? [[setting.flag, setting] as const] : [])));

  for (const setting of SETTINGS) {
    const value = env[setting.env];
    if (value !== undefined && value !== '') setPath(raw, setting.path, value);
  }

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      problems.push(`unexpected argument "${arg}"`);
      continue;
    }
    const eq = arg.indexOf('=');
    const flag = eq === -1 ? arg : arg.slice(0, eq);
    const setting = byFlag.get(flag);
    if (!setting) {
      problems.push(`unknown flag ${flag}`);
      if (eq === -1 && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) i++;
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) {
      value = argv[++i];
    }
    if (value === undefined) {
      problems.push(`${flag} needs a value`);
      continue;
    }
    setPath(raw, setting.path, value);
  }

  mergeInto(raw, overrides as Record<string, unknown>);
  const parsed = Config.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const setting = SETTINGS.find((s) => s.path.join('.') === issue.path.join('.'));
      const name = setting
        ? [setting.flag, setting.env].filter(Boolean).join(' / ')
        : issue.path.join('.') || '(config)';
      problems.push(`${name}: ${issue.message}`);
    }
  }
  if (parsed.success && parsed.data.ingest.hardCap < parsed.data.ingest.highWater) {
    problems.push('--ingest-hard-cap must not be below --ingest-high-water');
  }
  if (parsed.success && parsed.data.drift.psiMajor <= parsed.data.drift.psiModerate) {
    problems.push('--drift-psi-major must be above --drift-psi-moderate');
  }
  if (parsed.success && (parsed.data.tlsCert === undefined) !== (parsed.data.tlsKey === undefined)) {
    problems.push('--tls-cert and --tls-key go together: give both or neither');
  }
  if (parsed.success && parsed.data.mqttTlsPort !== undefined && parsed.data.tlsCert === undefined) {
    problems.push('--mqtt-tls-port needs --tls-cert and --tls-key');
  }
  if (parsed.success) problems.push(...brokerProblems(parsed.data));
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return deepFreeze(parsed.data);
}

/** This checkout's root: a default path under it is shown as `<repo>/...`, the same on every machine. */
const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** A setting's default as help and completions show it. */
export function showDefault(value: unknown): string {
  const text = String(value);
  return typeof value === 'string' && text.startsWith(REPO_ROOT) ? `<repo>/${text.slice(REPO_ROOT.length)}` : text;
}

/** The help text of the settings: one line per flag with its variable and default. */
export function describeSettings(): string {
  const defaults = Config.parse({}) as Record<string, unknown>;
  return SETTINGS.map((setting) => {
    let value: unknown = defaults;
    for (const part of setting.path) value = (value as Record<string, unknown> | undefined)?.[part];
    const shown = value === undefined ? '' : ` (default ${showDefault(value)})`;
    return `  ${(setting.flag ?? '(environment only)').padEnd(34)} ${setting.env}${shown}`;
  }).join('\n');
}
