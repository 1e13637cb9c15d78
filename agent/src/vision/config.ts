import path from 'node:path';
import type { Result } from '@edgeloop/protocol';
import { fail, ok } from '@edgeloop/protocol';
import { z } from 'zod';
import { DEFAULT_CAMERA_HEALTH_OPTIONS } from './camera-health.ts';
import { DEFAULT_PROVIDERS } from './providers.ts';

/*
 * The `vision` section of the agent config (agent.json), for the agent's config schema to embed:
 *
 *   "vision": {
 *     "source": { "kind": "ffmpeg", "url": "rtsp://cam.local/stream", "width": 1280 },
 *     "model": { "path": "models/ppocr-det.onnx", "manifestPath": "models/ppocr-det.json" },
 *     "providers": ["tensorrt", "cuda", "cpu"],
 *     "threads": { "intraOp": 2 }
 *   }
 *
 * `model` is the model to run at start when the model manager has none installed; relative paths
 * (model files, image folders, local video files, ffmpegPath) resolve against the config file's
 * folder (resolveVisionPaths).
 */

const Millis = z.int().min(0).max(86_400_000);

const RestartConfig = z.strictObject({
  initialDelayMs: z.int().min(10).max(600_000).default(500),
  maxDelayMs: z.int().min(10).max(3_600_000).default(30_000),
  /** Restarts in total before giving up; null: never give up (live streams). */
  maxRestarts: z.int().min(0).nullable().default(null),
  /** Local inputs: failures in a row without a frame before giving up. */
  maxConsecutiveFailures: z.int().min(1).max(1000).default(5),
});

export const FfmpegSourceConfig = z.strictObject({
  kind: z.literal('ffmpeg'),
  /** File path, rtsp://, http(s):// (MJPEG or other), /dev/videoN, or a lavfi graph with format "lavfi". */
  url: z.string().min(1).max(4096),
  format: z.string().min(1).max(32).optional(),
  inputOptions: z.array(z.string().max(256)).max(64).default([]),
  width: z.int().min(16).max(8192).optional(),
  height: z.int().min(16).max(8192).optional(),
  fps: z.number().positive().max(1000).optional(),
  loop: z.boolean().default(false),
  realtime: z.boolean().default(true),
  /**
   * ffmpeg scales frames to the model's input size (the JS preprocess then only normalises); sinks
   * that need the camera's resolution (hard samples) get it on every Nth frame. false: frames
   * arrive at the source size (or width/height) and are resized in JS.
   */
  scaleToModel: z.boolean().default(true),
  rtspTransport: z.enum(['tcp', 'udp']).default('tcp'),
  restart: RestartConfig.prefault({}),
  /** No bytes from ffmpeg for this long restarts it; null: never. Default 15 s for streams and devices. */
  stallTimeoutMs: z.int().min(100).max(3_600_000).nullable().optional(),
});
export type FfmpegSourceConfig = z.infer<typeof FfmpegSourceConfig>;

export const PiCameraSourceConfig = z.strictObject({
  kind: z.literal('pi-camera'),
  backend: z.enum(['rpicam', 'raspistill']).default('rpicam'),
  /** rpicam backend: the program (rpicam-still; libcamera-still on Bullseye). */
  command: z.string().min(1).max(256).optional(),
  width: z.int().min(16).max(8192).optional(),
  height: z.int().min(16).max(8192).optional(),
  intervalMs: Millis.default(1000),
  settleMs: Millis.default(1),
  captureTimeoutMs: z.int().min(100).max(600_000).default(10_000),
  maxConsecutiveFailures: z.int().min(1).max(1000).default(5),
  extraArgs: z.array(z.string().max(256)).max(64).default([]),
});
export type PiCameraSourceConfig = z.infer<typeof PiCameraSourceConfig>;

export const ImageFolderSourceConfig = z.strictObject({
  kind: z.literal('images'),
  dir: z.string().min(1).max(4096),
  loop: z.boolean().default(true),
  intervalMs: Millis.default(1000),
});
export type ImageFolderSourceConfig = z.infer<typeof ImageFolderSourceConfig>;

export const SyntheticSourceConfig = z.strictObject({
  kind: z.literal('synthetic'),
  width: z.int().min(16).max(8192).default(640),
  height: z.int().min(16).max(8192).default(480),
  /** null: as fast as the model takes frames. */
  fps: z.number().positive().max(1000).nullable().default(10),
  pattern: z.enum(['moving-box', 'black', 'gray', 'noise']).default('moving-box'),
});
export type SyntheticSourceConfig = z.infer<typeof SyntheticSourceConfig>;

export const VisionSourceConfig = z.discriminatedUnion('kind', [
  FfmpegSourceConfig,
  PiCameraSourceConfig,
  ImageFolderSourceConfig,
  SyntheticSourceConfig,
]);
export type VisionSourceConfig = z.infer<typeof VisionSourceConfig>;

export const CameraHealthConfig = z.strictObject({
  enabled: z.boolean().default(true),
  /** Sample a frame at most this often (frame capture time). */
  sampleIntervalMs: Millis.default(1000),
  thumbnailWidth: z.int().min(16).max(4096).default(320),
  blackMaxMean: z.number().min(0).max(255).default(DEFAULT_CAMERA_HEALTH_OPTIONS.blackMaxMean),
  blackMaxStd: z.number().min(0).max(255).default(DEFAULT_CAMERA_HEALTH_OPTIONS.blackMaxStd),
  frozenMaxDiff: z.number().min(0).max(255).default(DEFAULT_CAMERA_HEALTH_OPTIONS.frozenMaxDiff),
  frozenSamples: z.int().min(1).max(10_000).default(DEFAULT_CAMERA_HEALTH_OPTIONS.frozenSamples),
  blurRelative: z.number().min(0).max(1).default(DEFAULT_CAMERA_HEALTH_OPTIONS.blurRelative),
  blurSamples: z.int().min(1).max(10_000).default(DEFAULT_CAMERA_HEALTH_OPTIONS.blurSamples),
  blurAbsolute: z.number().min(0).default(DEFAULT_CAMERA_HEALTH_OPTIONS.blurAbsolute),
  baselineAlpha: z.number().min(0).max(1).default(DEFAULT_CAMERA_HEALTH_OPTIONS.baselineAlpha),
  sceneChangeDistance: z.number().min(0).max(1).default(DEFAULT_CAMERA_HEALTH_OPTIONS.sceneChangeDistance),
  warmupSamples: z.int().min(0).max(10_000).default(DEFAULT_CAMERA_HEALTH_OPTIONS.warmupSamples),
});
export type CameraHealthConfig = z.infer<typeof CameraHealthConfig>;

export const VisionConfig = z.strictObject({
  enabled: z.boolean().default(true),
  source: VisionSourceConfig,
  /** The model to run at start when the model manager has none installed. */
  model: z
    .strictObject({
      path: z.string().min(1).max(4096),
      /** Manifest JSON (protocol ModelManifest); absent: the adapter is guessed from the output shape. */
      manifestPath: z.string().min(1).max(4096).optional(),
    })
    .optional(),
  /** Execution providers, most preferred first. */
  providers: z
    .array(z.string().min(1).max(32))
    .min(1)
    .max(8)
    .default([...DEFAULT_PROVIDERS]),
  threads: z
    .strictObject({
      /** Threads inside an operator; 0: onnxruntime's default (one per core). */
      intraOp: z.int().min(0).max(256).default(0),
      interOp: z.int().min(0).max(256).default(0),
    })
    .prefault({}),
  queue: z
    .strictObject({
      capacity: z.int().min(1).max(64).default(2),
      /** drop-oldest for cameras; block (nothing dropped) for replaying files. */
      mode: z.enum(['drop-oldest', 'block']).default('drop-oldest'),
    })
    .prefault({}),
  cameraHealth: CameraHealthConfig.prefault({}),
  /** After the source fails for good (camera unplugged, stream gone), start it again after this (doubling, capped). */
  sourceRetry: z
    .strictObject({
      initialDelayMs: z.int().min(100).max(3_600_000).default(5_000),
      maxDelayMs: z.int().min(100).max(86_400_000).default(300_000),
    })
    .prefault({}),
  /** The ffmpeg binary; absent: ffmpeg on PATH, else the static one from @ffmpeg-installer/ffmpeg. */
  ffmpegPath: z.string().min(1).max(4096).optional(),
  /** onnxruntime's own log level (process-wide). */
  ortLogLevel: z.enum(['verbose', 'info', 'warning', 'error', 'fatal']).default('fatal'),
});
export type VisionConfig = z.infer<typeof VisionConfig>;
export type VisionConfigInput = z.input<typeof VisionConfig>;

/** Parses the vision section, listing every problem; the result is frozen. */
export function parseVisionConfig(raw: unknown): Result<Readonly<VisionConfig>, 'invalid_config'> {
  const parsed = VisionConfig.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `vision.${issue.path.join('.')}: ${issue.message}`);
    return fail('invalid_config', problems.join('; '));
  }
  return ok(deepFreeze(parsed.data));
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value as Record<string, unknown>)) deepFreeze(child);
  }
  return value;
}

const URL_LIKE = /^[a-z][a-z0-9+.-]*:/i;

/** Resolves relative file paths of the vision section against `baseDir` (the config file's folder). */
export function resolveVisionPaths(config: VisionConfig, baseDir: string): VisionConfig {
  const resolve = (p: string): string => (path.isAbsolute(p) ? p : path.resolve(baseDir, p));
  const source = ((): VisionSourceConfig => {
    switch (config.source.kind) {
      case 'ffmpeg':
        // URLs, devices and lavfi graphs stay as they are; only local file paths resolve.
        return config.source.format || URL_LIKE.test(config.source.url) || config.source.url.startsWith('/')
          ? config.source
          : { ...config.source, url: resolve(config.source.url) };
      case 'images':
        return { ...config.source, dir: resolve(config.source.dir) };
      default:
        return config.source;
    }
  })();
  return {
    ...config,
    source,
    model: config.model && {
      path: resolve(config.model.path),
      ...(config.model.manifestPath ? { manifestPath: resolve(config.model.manifestPath) } : {}),
    },
    ...(config.ffmpegPath?.includes('/') ? { ffmpegPath: resolve(config.ffmpegPath) } : {}),
  };
}
