import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parseTrustedKeys } from '@edgeloop/firmware-images/verify';
import { checkDeviceId, ok } from '@edgeloop/protocol';
import { z } from 'zod';
import { readTrustedKeyFiles } from './trusted-key-files.ts';
import { resolveVisionPaths, VisionConfig } from './vision/config.ts';

/*
 * Agent configuration: a JSON file (`edgeloop-agent --config agent.json`) plus environment
 * overrides. Environment variables win over the file:
 *
 *   | variable                       | config path          |
 *   | ------------------------------ | -------------------- |
 *   | EDGELOOP_DEVICE_ID             | deviceId             |
 *   | EDGELOOP_MQTT_URL              | mqtt.url             |
 *   | EDGELOOP_MQTT_USERNAME         | mqtt.username        |
 *   | EDGELOOP_MQTT_PASSWORD         | mqtt.password        |
 *   | EDGELOOP_MQTT_PASSWORD_FILE    | mqtt.passwordFile    |
 *   | EDGELOOP_MQTT_CERT_FILE        | mqtt.certFile        |
 *   | EDGELOOP_MQTT_KEY_FILE         | mqtt.keyFile         |
 *   | EDGELOOP_MQTT_CA_FILE          | mqtt.caFile          |
 *   | EDGELOOP_CONTROL_PLANE_URL     | controlPlaneUrl      |
 *   | EDGELOOP_DATA_DIR              | dataDir              |
 *   | EDGELOOP_TELEMETRY_INTERVAL_S  | telemetry.intervalS  |
 *   | EDGELOOP_LOG_LEVEL             | logLevel             |
 *
 * Relative paths (dataDir, mqtt.passwordFile, hardware.sysfsRoot, models.trustedKeys and the file
 * paths of the vision section) are resolved against the directory of the config file, or the
 * working directory when there is no file. A password file is read once here; its content
 * (trimmed) becomes `mqtt.password`; the TLS files (certFile, keyFile, caFile) become certPem,
 * keyPem and caPem the same way. Trusted key files are read here too: their PEM text is
 * appended to `models.trustedKeyPems` and every key is checked (Ed25519 public keys only).
 */

const MiB = 1024 * 1024;

const DeviceIdField = z.string().superRefine((value, ctx) => {
  const checked = checkDeviceId(value);
  if (!checked.ok) ctx.addIssue({ code: 'custom', message: checked.error.message });
});

function urlWithProtocols(protocols: readonly string[], what: string) {
  return z.string().refine(
    (value) => {
      try {
        const url = new URL(value);
        return protocols.includes(url.protocol) && url.hostname.length > 0;
      } catch {
        return false;
      }
    },
    { message: `must be ${what} URL (${protocols.map((p) => `${p}//`).join(' or ')}host[:port])` },
  );
}

export const ReconnectConfig = z.strictObject({
  /** First delay after a lost connection. */
  initialMs: z.int().min(10).max(600_000).default(500),
  /** Cap of the exponential backoff. */
  maxMs: z.int().min(10).max(3_600_000).default(30_000),
  /** Share of the delay that is random: the delay lies in [base * (1 - jitter), base]. */
  jitter: z.number().min(0).max(1).default(0.5),
  /** A connection that lasted this long resets the backoff to `initialMs`. */
  stableMs: z.int().min(0).max(3_600_000).default(30_000),
});
export type ReconnectConfig = z.infer<typeof ReconnectConfig>;

export const MqttConfig = z.strictObject({
  url: urlWithProtocols(['mqtt:', 'mqtts:'], 'an mqtt:// or mqtts://'),
  /** Defaults to the device id (username = client id = device id). */
  username: z.string().min(1).max(128).optional(),
  password: z.string().min(1).max(1024).optional(),
  /** A file holding the password; read at load time. */
  passwordFile: z.string().min(1).optional(),
  /**
   * mTLS (an mqtts:// URL): the device certificate and key issued at enrollment with --auth cert
   * (device.crt, device.key), and the CA the broker's certificate is checked against (ca.crt; the
   * system roots when absent). With a certificate the password is optional (it serves HTTP).
   */
  certFile: z.string().min(1).optional(),
  keyFile: z.string().min(1).optional(),
  caFile: z.string().min(1).optional(),
  /** PEM text of certFile / keyFile / caFile (filled at load time). */
  certPem: z.string().min(1).optional(),
  keyPem: z.string().min(1).optional(),
  caPem: z.string().min(1).optional(),
  keepaliveS: z.int().min(5).max(3600).default(30),
  connectTimeoutMs: z.int().min(100).max(600_000).default(10_000),
  reconnect: ReconnectConfig.prefault({}),
  /** Most unacknowledged QoS 1 publishes at a time. */
  maxInflight: z.int().min(1).max(1000).default(32),
});
export type MqttConfig = z.infer<typeof MqttConfig>;

export const OutboxFsync = z.enum(['always', 'interval', 'never']);
export type OutboxFsync = z.infer<typeof OutboxFsync>;

const Seconds = z.number().min(0).max(86_400);

/** Model updates: whose signatures count, how downloads retry, when a new model is healthy, shadow mode. */
export const ModelsConfig = z.strictObject({
  /**
   * Ed25519 public keys (.pub files, SPKI PEM, from edgeloop-image keygen) whose releases the agent
   * installs, or folders of them; several, so keys can rotate.
   */
  trustedKeys: z.array(z.string().min(1).max(4096)).max(16).default([]),
  /** The same as PEM text; loadConfig appends the contents of `trustedKeys` here. */
  trustedKeyPems: z.array(z.string().min(1).max(8192)).max(32).default([]),
  download: z
    .strictObject({
      initialRetryMs: z.int().min(10).max(3_600_000).default(1000),
      maxRetryMs: z.int().min(10).max(86_400_000).default(60_000),
      /** Attempts before a network failure ends the update; null: retry until it works (offline devices converge). */
      maxAttempts: z.int().min(1).max(1_000_000).nullable().default(null),
    })
    .prefault({}),
  /** The check after a switch (see model-update/health.ts). */
  health: z
    .strictObject({
      minFrames: z.int().min(1).max(1_000_000).default(30),
      minDurationS: Seconds.default(10),
      maxDurationS: Seconds.default(120),
      maxErrorShare: z.number().min(0).max(1).default(0.05),
      /** p95 budget = factor x the previous model's p95, when the manifest has no latencyBudgetMs. */
      latencyFactor: z.number().min(1).max(1000).default(5),
      /** The derived budget is never below this (ms): timer noise on tiny models is no regression. */
      latencyFloorMs: z.number().min(0).max(600_000).default(20),
      /** The previous model saw objects on at least this share of frames: an empty new model fails. */
      emptyOutputMinShare: z.number().min(0).max(1).default(0.2),
    })
    .prefault({}),
  shadow: z
    .strictObject({
      /** Share of frames the candidate also runs on. */
      sampleShare: z.number().gt(0).max(1).default(0.2),
      /** Candidate inference time at most this share of the current model's; frames over it are skipped. */
      maxExtraShare: z.number().min(0).max(100).default(0.5),
      /** And at most this many ms of candidate inference per second; null: no absolute cap. */
      maxMsPerS: z.number().positive().max(1000).nullable().default(null),
      iouThreshold: z.number().gt(0).max(1).default(0.5),
    })
    .prefault({}),
  /** Warm-up inferences before a new model is switched in. */
  warmupRuns: z.int().min(1).max(100).default(3),
});
export type ModelsConfig = z.infer<typeof ModelsConfig>;

export const LogLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);
export type LogLevel = z.infer<typeof LogLevel>;

export const AgentConfig = z
  .strictObject({
    deviceId: DeviceIdField,
    mqtt: MqttConfig,
    /** HTTP base URL of the control plane (downloads of models and bundles). */
    controlPlaneUrl: urlWithProtocols(['http:', 'https:'], 'an http:// or https://').optional(),
    /** Where the outbox, the last applied desired state and downloads live. */
    dataDir: z.string().min(1),
    telemetry: z.strictObject({ intervalS: z.number().min(0.1).max(86_400).default(10) }).prefault({}),
    outbox: z
      .strictObject({
        maxBytes: z
          .int()
          .min(64 * 1024)
          .max(4096 * MiB)
          .default(8 * MiB),
        /** `always`: fsync every append; `interval`: every fsyncIntervalMs; `never`: leave it to the OS. */
        fsync: OutboxFsync.default('always'),
        fsyncIntervalMs: z.int().min(10).max(600_000).default(1000),
      })
      .prefault({}),
    hardware: z
      .strictObject({
        /** orin-nano, orin-nx, xavier-nx, rpi5, x86-gpu, ... */
        profile: z
          .string()
          .max(64)
          .regex(/^[a-z0-9][a-z0-9._-]*$/, 'profile must be lowercase kebab-case, e.g. orin-nano')
          .optional(),
        /** Root under which /sys is read (tests point it at a fake tree). */
        sysfsRoot: z.string().min(1).default('/'),
      })
      .prefault({}),
    logLevel: LogLevel.default('info'),
    /** The vision pipeline (vision/config.ts); absent: no camera, no inference. */
    vision: VisionConfig.optional(),
    models: ModelsConfig.prefault({}),
  })
  .superRefine((config, ctx) => {
    for (const problem of crossFieldProblems(config)) {
      ctx.addIssue({ code: 'custom', path: problem.path.split('.'), message: problem.message });
    }
  })
  .transform((config) => ({
    ...config,
    mqtt: { ...config.mqtt, username: config.mqtt.username ?? config.deviceId },
  }));
export type AgentConfig = z.infer<typeof AgentConfig>;

/**
 * Rules between fields. zod skips an object's refinements once a field inside failed, so
 * loadConfig also runs these on the raw input: every problem is listed in one go.
 */
function crossFieldProblems(config: unknown): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const root = (config ?? {}) as { mqtt?: unknown };
  const mqtt = (root.mqtt !== null && typeof root.mqtt === 'object' ? root.mqtt : {}) as {
    password?: unknown;
    passwordFile?: unknown;
    certFile?: unknown;
    keyFile?: unknown;
    certPem?: unknown;
    keyPem?: unknown;
    url?: unknown;
    reconnect?: { initialMs?: unknown; maxMs?: unknown };
  };
  const hasCert = mqtt.certFile !== undefined || mqtt.certPem !== undefined;
  const hasKey = mqtt.keyFile !== undefined || mqtt.keyPem !== undefined;
  if (mqtt.password === undefined && mqtt.passwordFile === undefined && !hasCert) {
    problems.push({
      path: 'mqtt.password',
      message: 'a password, a passwordFile or a certFile is required (anonymous MQTT is not allowed)',
    });
  }
  if (hasCert !== hasKey) {
    problems.push({ path: hasCert ? 'mqtt.keyFile' : 'mqtt.certFile', message: 'certFile and keyFile go together' });
  }
  if (hasCert && typeof mqtt.url === 'string' && mqtt.url.startsWith('mqtt://')) {
    problems.push({
      path: 'mqtt.url',
      message: 'a certificate (certFile) is presented over TLS only: use the mqtts:// URL of the MQTT TLS listener',
    });
  }
  if (mqtt.password !== undefined && mqtt.passwordFile !== undefined) {
    problems.push({ path: 'mqtt.passwordFile', message: 'give password or passwordFile, not both' });
  }
  const models = (root as { models?: { health?: { minDurationS?: unknown; maxDurationS?: unknown } } }).models;
  const minDurationS = models?.health?.minDurationS;
  const maxDurationS = models?.health?.maxDurationS;
  if (typeof minDurationS === 'number' && typeof maxDurationS === 'number' && maxDurationS < minDurationS) {
    problems.push({ path: 'models.health.maxDurationS', message: 'must be >= minDurationS' });
  }
  const initialMs = mqtt.reconnect?.initialMs;
  const maxMs = mqtt.reconnect?.maxMs;
  if (typeof initialMs === 'number' && typeof maxMs === 'number' && maxMs < initialMs) {
    problems.push({ path: 'mqtt.reconnect.maxMs', message: 'must be >= initialMs' });
  }
  return problems;
}

/** Environment variable -> config path (see the table above). */
export const ENV_OVERRIDES: ReadonlyArray<{
  readonly name: string;
  readonly path: readonly string[];
  readonly number?: true;
}> = [
  { name: 'EDGELOOP_DEVICE_ID', path: ['deviceId'] },
  { name: 'EDGELOOP_MQTT_URL', path: ['mqtt', 'url'] },
  { name: 'EDGELOOP_MQTT_USERNAME', path: ['mqtt', 'username'] },
  { name: 'EDGELOOP_MQTT_PASSWORD', path: ['mqtt', 'password'] },
  { name: 'EDGELOOP_MQTT_PASSWORD_FILE', path: ['mqtt', 'passwordFile'] },
  { name: 'EDGELOOP_MQTT_CERT_FILE', path: ['mqtt', 'certFile'] },
  { name: 'EDGELOOP_MQTT_KEY_FILE', path: ['mqtt', 'keyFile'] },
  { name: 'EDGELOOP_MQTT_CA_FILE', path: ['mqtt', 'caFile'] },
  { name: 'EDGELOOP_CONTROL_PLANE_URL', path: ['controlPlaneUrl'] },
  { name: 'EDGELOOP_DATA_DIR', path: ['dataDir'] },
  { name: 'EDGELOOP_TELEMETRY_INTERVAL_S', path: ['telemetry', 'intervalS'], number: true },
  { name: 'EDGELOOP_LOG_LEVEL', path: ['logLevel'] },
];

export type ConfigProblem = { readonly path: string; readonly message: string };

export type LoadConfigInput = {
  /** The config file's text; read from `filePath` when absent. */
  readonly fileText?: string;
  readonly filePath?: string;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Base for relative paths when there is no file (defaults to the working directory). */
  readonly cwd?: string;
};

export type ConfigError = {
  readonly code: 'invalid_config';
  readonly message: string;
  readonly problems: readonly ConfigProblem[];
};

/** Like protocol's Result, with every problem listed in the failure. */
export type LoadConfigResult =
  | { readonly ok: true; readonly value: AgentConfig }
  | { readonly ok: false; readonly error: ConfigError };

/**
 * Loads, validates and freezes the agent config. Never throws: every problem found (file,
 * JSON, schema, password file) is listed as `path: message`.
 */
export function loadConfig(input: LoadConfigInput): LoadConfigResult {
  const problems: ConfigProblem[] = [];
  let raw: Record<string, unknown> = {};
  let text = input.fileText;
  if (text === undefined && input.filePath !== undefined) {
    try {
      text = readFileSync(input.filePath, 'utf8');
    } catch (error) {
      problems.push({ path: '(file)', message: `cannot read ${input.filePath}: ${(error as Error).message}` });
    }
  }
  if (text !== undefined) {
    try {
      const parsed: unknown = JSON.parse(text);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        problems.push({ path: '(file)', message: 'config must be a JSON object' });
      } else {
        raw = parsed as Record<string, unknown>;
      }
    } catch (error) {
      problems.push({ path: '(file)', message: `invalid JSON: ${(error as Error).message}` });
    }
  }

  const fromEnv = new Map<string, string>();
  for (const override of ENV_OVERRIDES) {
    const value = input.env[override.name];
    if (value === undefined || value === '') continue;
    const parsedValue =
      override.number && value.trim() !== '' && Number.isFinite(Number(value)) ? Number(value) : value;
    raw = setPath(raw, override.path, parsedValue);
    fromEnv.set(override.path.join('.'), override.name);
  }

  const result = AgentConfig.safeParse(raw);
  if (!result.success) {
    const seen = new Set<string>();
    for (const issue of result.error.issues) {
      const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
      const envName = fromEnv.get(where);
      seen.add(`${where}: ${issue.message}`);
      problems.push({ path: envName ? `${where} (from ${envName})` : where, message: issue.message });
    }
    for (const problem of crossFieldProblems(raw)) {
      if (!seen.has(`${problem.path}: ${problem.message}`)) problems.push(problem);
    }
    return configFailure(problems);
  }
  if (problems.length > 0) return configFailure(problems);

  const base = input.filePath !== undefined ? path.dirname(path.resolve(input.filePath)) : (input.cwd ?? process.cwd());
  const config = result.data;
  const resolved: AgentConfig = {
    ...config,
    dataDir: path.resolve(base, config.dataDir),
    hardware: { ...config.hardware, sysfsRoot: path.resolve(base, config.hardware.sysfsRoot) },
    mqtt: { ...config.mqtt },
    ...(config.vision ? { vision: resolveVisionPaths(config.vision, base) } : {}),
    models: readTrustedKeys(config.models, base, problems),
  };
  if (config.mqtt.passwordFile !== undefined) {
    const passwordFile = path.resolve(base, config.mqtt.passwordFile);
    resolved.mqtt.passwordFile = passwordFile;
    try {
      const password = readFileSync(passwordFile, 'utf8').trim();
      if (password.length === 0) problems.push({ path: 'mqtt.passwordFile', message: `${passwordFile} is empty` });
      resolved.mqtt.password = password;
    } catch (error) {
      problems.push({ path: 'mqtt.passwordFile', message: `cannot read ${passwordFile}: ${(error as Error).message}` });
    }
  }
  for (const [fileKey, pemKey] of [
    ['certFile', 'certPem'],
    ['keyFile', 'keyPem'],
    ['caFile', 'caPem'],
  ] as const) {
    const file = config.mqtt[fileKey];
    if (file === undefined) continue;
    const resolvedFile = path.resolve(base, file);
    resolved.mqtt[fileKey] = resolvedFile;
    try {
      resolved.mqtt[pemKey] = readFileSync(resolvedFile, 'utf8');
    } catch (error) {
      problems.push({ path: `mqtt.${fileKey}`, message: `cannot read ${resolvedFile}: ${(error as Error).message}` });
    }
  }
  if (problems.length > 0) return configFailure(problems);
  return ok(deepFreeze(resolved));
}

/**
 * Resolves the key files (a `.pub` file or a folder of them), appends their PEM text to
 * trustedKeyPems and checks every key.
 */
function readTrustedKeys(models: ModelsConfig, base: string, problems: ConfigProblem[]): ModelsConfig {
  const files = models.trustedKeys.map((file) => path.resolve(base, file));
  const pems = [...models.trustedKeyPems];
  if (files.length > 0) {
    const read = readTrustedKeyFiles(files, base);
    if (!read.ok) {
      problems.push({ path: 'models.trustedKeys', message: read.error.message });
      return { ...models, trustedKeys: files, trustedKeyPems: pems };
    }
    pems.push(...read.value.map((file) => file.publicKeyPem));
  }
  if (pems.length > 0) {
    const parsed = parseTrustedKeys(pems.map((publicKeyPem) => ({ publicKeyPem })));
    if (!parsed.ok) problems.push({ path: 'models.trustedKeys', message: parsed.error.message });
  }
  return { ...models, trustedKeys: files, trustedKeyPems: pems };
}

/** Every problem on its own line, for a CLI to print. */
export function formatConfigProblems(problems: readonly ConfigProblem[]): string {
  return problems.map((problem) => `  ${problem.path}: ${problem.message}`).join('\n');
}

function configFailure(problems: ConfigProblem[]): LoadConfigResult {
  return {
    ok: false,
    error: { code: 'invalid_config', message: `invalid agent config (${problems.length} problem(s))`, problems },
  };
}

function setPath(target: Record<string, unknown>, keys: readonly string[], value: unknown): Record<string, unknown> {
  const [head, ...rest] = keys;
  if (head === undefined) return target;
  const copy = { ...target };
  if (rest.length === 0) {
    copy[head] = value;
  } else {
    const child = copy[head];
    const childObject =
      child !== null && typeof child === 'object' && !Array.isArray(child) ? (child as Record<string, unknown>) : {};
    copy[head] = setPath(childObject, rest, value);
  }
  return copy;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}

/** Dotted paths whose values differ between two configs (for `reload-config`). */
export function diffConfig(before: unknown, after: unknown, prefix = ''): string[] {
  if (Object.is(before, after)) return [];
  const bothObjects =
    before !== null &&
    after !== null &&
    typeof before === 'object' &&
    typeof after === 'object' &&
    !Array.isArray(before) &&
    !Array.isArray(after);
  if (!bothObjects) {
    return JSON.stringify(before) === JSON.stringify(after) ? [] : [prefix || '(root)'];
  }
  const keys = new Set([...Object.keys(before as object), ...Object.keys(after as object)]);
  const changed: string[] = [];
  for (const key of [...keys].sort()) {
    const childPrefix = prefix ? `${prefix}.${key}` : key;
    changed.push(
      ...diffConfig((before as Record<string, unknown>)[key], (after as Record<string, unknown>)[key], childPrefix),
    );
  }
  return changed;
}
