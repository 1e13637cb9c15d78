import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ProviderInfo } from '@edgeloop/protocol';
import * as ort from 'onnxruntime-node';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import type { ModelOutputs } from './adapters/adapter-types.ts';
import { tensorLength } from './adapters/adapter-types.ts';
import { DEFAULT_PROVIDERS } from './providers.ts';
import { describeError, VisionError } from './vision-error.ts';

/*
 * One onnxruntime-node session with an execution-provider preference list.
 *
 * Providers are tried in order; attempt i registers the list from i onwards (TensorRT then falls
 * back to CUDA, then CPU, for nodes it cannot run), so the first attempt that loads names the
 * active provider. Every skipped provider's reason is kept in ProviderInfo.fallbackReason (sent in
 * telemetry) and logged once. The npm package ships only the CPU provider: GPU providers need
 * `ONNXRUNTIME_NODE_INSTALL=cuda12` at install time on x64 with CUDA 12 + cuDNN 9, or a source
 * build on Jetson.
 *
 * Note: onnxruntime-node 1.30 runs `session.run` synchronously (inside a setImmediate), so the event
 * loop is busy for the length of one inference.
 */

export { DEFAULT_PROVIDERS } from './providers.ts';

export type OrtLogLevel = 'verbose' | 'info' | 'warning' | 'error' | 'fatal';

export interface ModelSessionOptions {
  modelPath: string;
  /** Execution providers, most preferred first (default tensorrt, cuda, cpu). */
  providers?: readonly string[] | undefined;
  /** Threads inside one operator; 0 or absent: onnxruntime's default (one per core). */
  intraOpThreads?: number | undefined;
  /** Threads across operators (parallel execution mode only); 0 or absent: default. */
  interOpThreads?: number | undefined;
  /**
   * onnxruntime's own log level. It is process-wide and fixed by the first session created;
   * default 'fatal' (fallback errors are reported through ProviderInfo and our logger instead).
   */
  ortLogLevel?: OrtLogLevel | undefined;
  logger?: Logger | undefined;
}

export interface ModelSession {
  readonly modelPath: string;
  /** sha256 (hex) of the ONNX file's bytes. */
  readonly sha256: string;
  readonly sizeBytes: number;
  readonly provider: ProviderInfo;
  readonly inputNames: readonly string[];
  /** Shape per input as the model declares it; strings are symbolic (dynamic) dimensions. */
  readonly inputShapes: Readonly<Record<string, readonly (number | string)[]>>;
  readonly inputTypes: Readonly<Record<string, string>>;
  readonly outputNames: readonly string[];
  readonly outputShapes: Readonly<Record<string, readonly (number | string)[]>>;
  readonly intraOpThreads: number;
  /** Runs the model on `input[0 .. product(dims))` fed as `inputName`. */
  run(inputName: string, input: Float32Array, dims: readonly number[]): Promise<ModelOutputs>;
  release(): Promise<void>;
}

const SEVERITY: Record<OrtLogLevel, 0 | 1 | 2 | 3 | 4> = { verbose: 0, info: 1, warning: 2, error: 3, fatal: 4 };

function shapeOf(metadata: ort.InferenceSession.ValueMetadata): (number | string)[] {
  return metadata.isTensor ? [...metadata.shape] : [];
}

function typeOf(metadata: ort.InferenceSession.ValueMetadata): string {
  return metadata.isTensor ? metadata.type : 'non-tensor';
}

export async function createModelSession(options: ModelSessionOptions): Promise<ModelSession> {
  const logger = (options.logger ?? silentLogger).child({ component: 'inference' });
  const requested = [...(options.providers ?? DEFAULT_PROVIDERS)].map((p) => p.toLowerCase());
  if (requested.length === 0) throw new VisionError('provider_unavailable', 'the execution provider list is empty');
  const level = options.ortLogLevel ?? 'fatal';
  ort.env.logLevel = level;

  let bytes: Buffer;
  try {
    bytes = await readFile(options.modelPath);
  } catch (error) {
    const missing = (error as NodeJS.ErrnoException).code === 'ENOENT';
    throw new VisionError(
      missing ? 'model_not_found' : 'model_invalid',
      `model ${options.modelPath}: ${describeError(error)}`,
      { cause: error },
    );
  }
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const intraOpThreads = options.intraOpThreads ?? 0;

  const reasons: string[] = [];
  let session: ort.InferenceSession | null = null;
  let active = '';
  let lastError: unknown = null;
  for (let i = 0; i < requested.length && !session; i++) {
    const providers = requested.slice(i);
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: providers as ort.InferenceSession.ExecutionProviderConfig[],
        intraOpNumThreads: intraOpThreads,
        interOpNumThreads: options.interOpThreads ?? 0,
        graphOptimizationLevel: 'all',
        executionMode: 'sequential',
        logSeverityLevel: SEVERITY[level],
      });
      active = requested[i] as string;
    } catch (error) {
      lastError = error;
      reasons.push(`${requested[i]}: ${describeError(error).split('\n')[0]}`);
    }
  }
  if (!session) {
    const message = `no execution provider could load ${options.modelPath} (${reasons.join('; ')})`;
    // When even the CPU provider fails, the file is the problem, not the hardware.
    const cpuTried = requested.includes('cpu');
    throw new VisionError(cpuTried ? 'model_invalid' : 'provider_unavailable', message, { cause: lastError });
  }
  const provider: ProviderInfo = { requested: requested.slice(0, 8).map((p) => p.slice(0, 32)), active };
  if (reasons.length > 0) {
    provider.fallbackReason = reasons.join('; ').slice(0, 1024);
    logger.warn({ requested, active, reason: provider.fallbackReason }, 'execution provider fallback');
  } else {
    logger.info({ requested, active }, 'model session created');
  }

  const inputShapes: Record<string, (number | string)[]> = {};
  const inputTypes: Record<string, string> = {};
  session.inputNames.forEach((name, i) => {
    const meta = session.inputMetadata[i];
    inputShapes[name] = meta ? shapeOf(meta) : [];
    inputTypes[name] = meta ? typeOf(meta) : 'unknown';
  });
  const outputShapes: Record<string, (number | string)[]> = {};
  session.outputNames.forEach((name, i) => {
    const meta = session.outputMetadata[i];
    outputShapes[name] = meta ? shapeOf(meta) : [];
    if (meta && typeOf(meta) !== 'float32') {
      throw new VisionError('model_invalid', `output ${name} is ${typeOf(meta)}; the adapters read float32 outputs`);
    }
  });
  const loaded = session;
  // The feeds of the latest call: the pipeline passes the same buffer and dims every frame, so
  // the tensor (a view of the buffer, read at run time) is made once per stream, not per frame.
  let feeds: { input: Float32Array; name: string; dims: readonly number[]; value: Record<string, ort.Tensor> } | null =
    null;
  const feedsFor = (name: string, input: Float32Array, dims: readonly number[]): Record<string, ort.Tensor> => {
    if (feeds && feeds.input === input && feeds.name === name && feeds.dims === dims) return feeds.value;
    const n = tensorLength(dims);
    const data = input.length === n ? input : input.subarray(0, n);
    feeds = { input, name, dims, value: { [name]: new ort.Tensor('float32', data, dims) } };
    return feeds.value;
  };

  return {
    modelPath: options.modelPath,
    sha256,
    sizeBytes: bytes.length,
    provider,
    inputNames: [...loaded.inputNames],
    inputShapes,
    inputTypes,
    outputNames: [...loaded.outputNames],
    outputShapes,
    intraOpThreads,
    async run(inputName, input, dims) {
      try {
        const results = await loaded.run(feedsFor(inputName, input, dims));
        return results as unknown as ModelOutputs;
      } catch (error) {
        throw new VisionError('inference_failed', `inference on ${options.modelPath}: ${describeError(error)}`, {
          cause: error,
        });
      }
    },
    release: () => loaded.release(),
  };
}
