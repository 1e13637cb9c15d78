/* Hardware and model profiles: what a simulated device reports, chosen so the numbers look like the
 * real boxes (published specs for cores/memory; inference speed relative to a Jetson Orin Nano). */

export type HardwareProfile = {
  readonly name: string;
  readonly arch: 'arm64' | 'x64';
  readonly cores: number;
  readonly memoryBytes: number;
  readonly diskBytes: number;
  /** CPU temperature at idle and the rise at full load, in °C. */
  readonly idleTempC: number;
  readonly loadTempRiseC: number;
  /** GPU present and readable (a Raspberry Pi has none usable for inference). */
  readonly gpu: boolean;
  /** Inference speed relative to an Orin Nano running the same model (higher is faster). */
  readonly speed: number;
  /** Background CPU load of the OS and agent, percent. */
  readonly baseCpuPct: number;
  readonly providers: readonly string[];
};

const GiB = 1024 ** 3;

export const HARDWARE_PROFILES: Readonly<Record<string, HardwareProfile>> = {
  'orin-nano': {
    name: 'orin-nano',
    arch: 'arm64',
    cores: 6,
    memoryBytes: 8 * GiB,
    diskBytes: 128e9,
    idleTempC: 41,
    loadTempRiseC: 22,
    gpu: true,
    speed: 1,
    baseCpuPct: 12,
    providers: ['tensorrt', 'cuda', 'cpu'],
  },
  'orin-nx': {
    name: 'orin-nx',
    arch: 'arm64',
    cores: 8,
    memoryBytes: 16 * GiB,
    diskBytes: 256e9,
    idleTempC: 39,
    loadTempRiseC: 20,
    gpu: true,
    speed: 1.9,
    baseCpuPct: 9,
    providers: ['tensorrt', 'cuda', 'cpu'],
  },
  'xavier-nx': {
    name: 'xavier-nx',
    arch: 'arm64',
    cores: 6,
    memoryBytes: 8 * GiB,
    diskBytes: 64e9,
    idleTempC: 44,
    loadTempRiseC: 25,
    gpu: true,
    speed: 0.6,
    baseCpuPct: 15,
    providers: ['tensorrt', 'cuda', 'cpu'],
  },
  rpi5: {
    name: 'rpi5',
    arch: 'arm64',
    cores: 4,
    memoryBytes: 8 * GiB,
    diskBytes: 64e9,
    idleTempC: 48,
    loadTempRiseC: 30,
    gpu: false,
    speed: 0.11,
    baseCpuPct: 20,
    providers: ['cpu'],
  },
  'x86-gpu': {
    name: 'x86-gpu',
    arch: 'x64',
    cores: 16,
    memoryBytes: 32 * GiB,
    diskBytes: 1e12,
    idleTempC: 35,
    loadTempRiseC: 30,
    gpu: true,
    speed: 5,
    baseCpuPct: 5,
    providers: ['tensorrt', 'cuda', 'cpu'],
  },
};

export const HARDWARE_NAMES = Object.keys(HARDWARE_PROFILES);

export function hardwareProfile(name: string): HardwareProfile {
  const profile = HARDWARE_PROFILES[name];
  if (!profile) throw new Error(`unknown hardware profile "${name}"; known: ${HARDWARE_NAMES.join(', ')}`);
  return profile;
}

/** How a model behaves, as the simulator plays it. */
export type ModelProfile = {
  /** p50 inference latency on an Orin Nano, ms. */
  readonly latencyMs: number;
  /** Mean detections per frame, per class. */
  readonly detectionsPerFrame: Readonly<Record<string, number>>;
  /** Mean and spread of detection confidence (a clipped normal). */
  readonly confidenceMean: number;
  readonly confidenceSd: number;
  /** Confidence threshold the model's manifest uses. */
  readonly threshold: number;
  /** Share of frames whose inference fails. */
  readonly errorRate: number;
  /** Frames per second the model processes at most (none: bound by latency and the camera). */
  readonly maxFps?: number;
};

/** What an unknown model does: a small detector at 30 ms on an Orin Nano. */
export const DEFAULT_MODEL_PROFILE: ModelProfile = {
  latencyMs: 30,
  detectionsPerFrame: { person: 2.4, car: 1.1, bicycle: 0.2 },
  confidenceMean: 0.68,
  confidenceSd: 0.14,
  threshold: 0.25,
  errorRate: 0,
};

/** A change a scenario applies to a model on the devices that run it (bad model, crash...). */
export type ModelBehaviour = {
  readonly latencyFactor?: number;
  readonly detectionFactor?: number;
  readonly detectionsPerFrame?: Readonly<Record<string, number>>;
  readonly confidenceShift?: number;
  readonly confidenceSd?: number;
  readonly errorRate?: number;
  readonly maxFps?: number;
  /** The model crashes right after loading: the agent reverts locally. */
  readonly crashOnLoad?: boolean;
  /** How the model behaves on a changed scene, by scene name (played over this behaviour). */
  readonly scenes?: Readonly<Record<string, Omit<ModelBehaviour, 'crashOnLoad' | 'scenes'>>>;
};

export function applyBehaviour(profile: ModelProfile, behaviour: ModelBehaviour | undefined): ModelProfile {
  if (!behaviour) return profile;
  const detectionFactor = behaviour.detectionFactor ?? 1;
  const maxFps = behaviour.maxFps ?? profile.maxFps;
  return {
    ...profile,
    latencyMs: profile.latencyMs * (behaviour.latencyFactor ?? 1),
    detectionsPerFrame: Object.fromEntries(
      Object.entries(behaviour.detectionsPerFrame ?? profile.detectionsPerFrame).map(([label, rate]) => [
        label,
        rate * detectionFactor,
      ]),
    ),
    confidenceMean: Math.min(0.99, Math.max(0.01, profile.confidenceMean + (behaviour.confidenceShift ?? 0))),
    confidenceSd: behaviour.confidenceSd ?? profile.confidenceSd,
    errorRate: behaviour.errorRate ?? profile.errorRate,
    ...(maxFps !== undefined ? { maxFps } : {}),
  };
}
