import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AdapterName, Result } from '@edgeloop/protocol';
import { fail, ModelManifest, ok } from '@edgeloop/protocol';

/*
 * Model manifests (protocol ModelManifest): which adapter, input spec, labels, thresholds.
 * Adapter-specific defaults are applied before the protocol schema's generic ones, so a db-text
 * manifest that names no normalisation gets PaddleOCR's (ImageNet mean/std over BGR, stretch
 * resize) rather than YOLO's (/255, letterbox).
 */

export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

const ADAPTER_INPUT_DEFAULTS: Record<AdapterName, Record<string, unknown>> = {
  yolo: {},
  'db-text': { resize: 'stretch', colorOrder: 'bgr', mean: IMAGENET_MEAN, std: IMAGENET_STD },
  classification: { resize: 'stretch', mean: IMAGENET_MEAN, std: IMAGENET_STD },
};

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Fills input fields the raw manifest leaves out with its adapter's defaults. */
export function withAdapterDefaults(raw: unknown): unknown {
  if (!isRecord(raw) || typeof raw.adapter !== 'string' || !(raw.adapter in ADAPTER_INPUT_DEFAULTS)) return raw;
  const defaults = ADAPTER_INPUT_DEFAULTS[raw.adapter as AdapterName];
  const input = isRecord(raw.input) ? raw.input : {};
  const out: Record<string, unknown> = { ...raw, input: { ...defaults, ...input } };
  if (raw.adapter === 'db-text' && raw.labels === undefined) out.labels = ['text'];
  return out;
}

/** Parses a manifest, listing every problem in the message. */
export function parseModelManifest(raw: unknown): Result<ModelManifest, 'manifest_invalid'> {
  const parsed = ModelManifest.safeParse(withAdapterDefaults(raw));
  if (parsed.success) return ok(parsed.data);
  const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  return fail('manifest_invalid', `invalid model manifest: ${problems.join('; ')}`);
}

export async function loadModelManifest(file: string): Promise<Result<ModelManifest, 'manifest_invalid'>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return fail('manifest_invalid', `cannot read manifest ${file}: ${(error as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return fail('manifest_invalid', `manifest ${file} is not JSON: ${(error as Error).message}`);
  }
  const parsed = parseModelManifest(raw);
  if (!parsed.ok) return fail('manifest_invalid', `${file}: ${parsed.error.message}`);
  return parsed;
}

/**
 * Guesses the adapter from the first output's shape: [N, 1, H, W] probability map -> db-text,
 * [1, A, B] -> yolo, [1, C] -> classification. Null when the shape says nothing.
 */
export function guessAdapter(outputShape: readonly (number | string)[] | undefined): AdapterName | null {
  if (!outputShape) return null;
  if (outputShape.length === 4 && outputShape[1] === 1) return 'db-text';
  if (outputShape.length === 3) return 'yolo';
  if (outputShape.length === 2) return 'classification';
  return null;
}

/** A model name the manifest schema accepts, made from a file name. */
export function modelNameFromPath(file: string): string {
  const base = path
    .basename(file, path.extname(file))
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[^a-z0-9]+/, '');
  return (base || 'model').slice(0, 63);
}

/** The manifest used when none is given: the adapter's defaults, version 0.0.0. */
export function defaultManifest(adapter: AdapterName, modelPath: string): ModelManifest {
  const parsed = parseModelManifest({ name: modelNameFromPath(modelPath), version: '0.0.0', adapter });
  if (!parsed.ok) throw new Error(parsed.error.message);
  return parsed.value;
}
