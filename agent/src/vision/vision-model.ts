import type { ModelManifest, ModelRef, ProviderInfo } from '@edgeloop/protocol';
import { modelId } from '@edgeloop/protocol';
import type { ModelAdapter, ModelInput } from './adapters/adapter-types.ts';
import { tensorLength } from './adapters/adapter-types.ts';
import { createModelAdapter } from './adapters/model-adapter.ts';
import type { ModelSession, ModelSessionOptions } from './inference.ts';
import { createModelSession } from './inference.ts';
import { defaultManifest, guessAdapter } from './model-manifest.ts';
import { describeError, VisionError } from './vision-error.ts';

/*
 * A loaded model: session + manifest + adapter, warmed up. The pipeline runs one; the detect CLI
 * runs one; a model update loads the next one beside the current and swaps it in.
 */

export interface VisionModel {
  readonly manifest: ModelManifest;
  readonly adapter: ModelAdapter;
  readonly session: ModelSession;
  readonly input: ModelInput;
  /** {id, name, version, sha256 of the ONNX file} as telemetry reports it. */
  readonly ref: ModelRef;
  readonly provider: ProviderInfo;
  /** True when no manifest was given and the adapter was guessed from the output shape. */
  readonly guessed: boolean;
  release(): Promise<void>;
}

export interface LoadVisionModelOptions extends ModelSessionOptions {
  /** The manifest; absent or null: the adapter is guessed from the first output's shape. */
  manifest?: ModelManifest | null | undefined;
  /** Run the model once at load (default true): the first real frame then pays no set-up cost. */
  warmup?: boolean | undefined;
  /** Frame size the warm-up input is shaped for (matters for dynamic-size models; default 640x480). */
  warmupFrameSize?: { width: number; height: number } | undefined;
}

/**
 * Input name, layout and size: read from the model, overridden by the manifest. Fails with
 * `manifest_invalid` when the two disagree in a way no run could survive.
 */
export function resolveModelInput(session: ModelSession, manifest: ModelManifest): ModelInput {
  const name = manifest.input.name ?? session.inputNames[0];
  if (!name || !session.inputNames.includes(name)) {
    throw new VisionError(
      'manifest_invalid',
      `model has no input ${JSON.stringify(name)}; its inputs are ${session.inputNames.join(', ')}`,
    );
  }
  const type = session.inputTypes[name];
  if (type !== 'float32')
    throw new VisionError('model_invalid', `input ${name} is ${type}; only float32 inputs are supported`);
  const shape = session.inputShapes[name] ?? [];
  const layout = manifest.input.layout;
  if (shape.length !== 4) {
    throw new VisionError(
      'model_invalid',
      `input ${name} has shape [${shape.join(', ')}]; an image input has 4 dimensions`,
    );
  }
  const channelDim = layout === 'nchw' ? shape[1] : shape[3];
  if (typeof channelDim === 'number' && channelDim !== 3) {
    throw new VisionError(
      'manifest_invalid',
      `input ${name} is [${shape.join(', ')}]: not ${layout} with 3 channels (set input.layout in the manifest)`,
    );
  }
  const modelHeight = layout === 'nchw' ? shape[2] : shape[1];
  const modelWidth = layout === 'nchw' ? shape[3] : shape[2];
  return {
    name,
    layout,
    width: manifest.input.width ?? (typeof modelWidth === 'number' ? modelWidth : null),
    height: manifest.input.height ?? (typeof modelHeight === 'number' ? modelHeight : null),
  };
}

export async function loadVisionModel(options: LoadVisionModelOptions): Promise<VisionModel> {
  const session = await createModelSession(options);
  try {
    let manifest = options.manifest ?? null;
    const guessed = manifest === null;
    if (!manifest) {
      const first = session.outputNames[0];
      const shape = first === undefined ? undefined : session.outputShapes[first];
      const adapter = guessAdapter(shape);
      if (!adapter) {
        throw new VisionError(
          'adapter_unknown',
          `cannot guess the adapter of ${options.modelPath} from its output shape [${(shape ?? []).join(', ')}]: pass a manifest (--manifest FILE)`,
        );
      }
      manifest = defaultManifest(adapter, options.modelPath);
    }
    const input = resolveModelInput(session, manifest);
    const adapter = createModelAdapter(manifest, input);
    if (options.warmup ?? true) {
      const size = options.warmupFrameSize ?? { width: 640, height: 480 };
      const dims = adapter.inputDims(size.width, size.height);
      try {
        await session.run(input.name, new Float32Array(tensorLength(dims)), dims);
      } catch (error) {
        throw new VisionError(
          'manifest_invalid',
          `warm-up run of ${options.modelPath} with input [${dims.join(', ')}] failed: ${describeError(error)}`,
          { cause: error },
        );
      }
    }
    return {
      manifest,
      adapter,
      session,
      input,
      ref: {
        id: modelId(manifest.name, manifest.version),
        name: manifest.name,
        version: manifest.version,
        sha256: session.sha256,
      },
      provider: session.provider,
      guessed,
      release: () => session.release(),
    };
  } catch (error) {
    await session.release().catch(() => {});
    throw error;
  }
}
