import type { TelemetrySample } from './repositories.ts';

/*
 * The fields of a telemetry message that rollout gates read, extracted by the database so that a
 * gate evaluation moves small rows instead of whole telemetry documents. Both dialects extract
 * these paths, in this order, into one JSON array per message (SQLite in SQL, PostgreSQL here
 * from the body text, see extractSampleFields); parseTelemetrySample reads it.
 */

/** Paths into a Telemetry message (protocol messages.ts), in the order of the extracted array. */
export const TELEMETRY_SAMPLE_PATHS: readonly (readonly string[])[] = [
  ['pipeline', 'model', 'sha256'],
  ['pipeline', 'framesProcessed'],
  ['pipeline', 'inferenceErrors'],
  ['pipeline', 'windowS'],
  ['pipeline', 'latencyMs', 'inference', 'p95'],
  ['pipeline', 'detectionsPer1000'],
  ['pipeline', 'confidenceHistogram'],
  ['shadow', 'candidate', 'sha256'],
  ['shadow', 'framesCompared'],
  ['shadow', 'precision'],
  ['shadow', 'recall'],
  ['shadow', 'candidateLatencyMs', 'p95'],
];

/** `$.pipeline.model.sha256` style paths (SQLite json_extract). */
export const SQLITE_SAMPLE_PATHS: readonly string[] = TELEMETRY_SAMPLE_PATHS.map((path) => `$.${path.join('.')}`);

/**
 * The extracted array from a telemetry document parsed here, for stores that hand back the body
 * text. (PostgreSQL keeps bodies as text; casting each to jsonb costs it more than JSON.parse
 * costs us: about 1 s against 0.2 s for 30,000 messages, see bench/rollout-window.ts.)
 */
export function extractSampleFields(body: string): unknown[] {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return [];
  }
  return TELEMETRY_SAMPLE_PATHS.map((path) => {
    let node: unknown = doc;
    for (const key of path) {
      if (typeof node !== 'object' || node === null || Array.isArray(node)) return null;
      node = (node as Record<string, unknown>)[key];
    }
    return node ?? null;
  });
}

function numberOr<T>(value: unknown, fallback: T): number | T {
  return typeof value === 'number' && Number.isFinite(value) ? value : fallback;
}

/**
 * One sample from the extracted array (JSON text, or the array itself). Stored telemetry passed
 * schema validation at ingest, but the parse stays defensive: a missing or odd field becomes zero
 * or null, never an exception.
 */
export function parseTelemetrySample(deviceId: string, receivedAt: number, extracted: unknown): TelemetrySample {
  let fields: unknown = extracted;
  if (typeof extracted === 'string') {
    try {
      fields = JSON.parse(extracted);
    } catch {
      fields = [];
    }
  }
  const f = Array.isArray(fields) ? fields : [];
  const detections: Record<string, number> = {};
  const rawDetections = f[5];
  if (typeof rawDetections === 'object' && rawDetections !== null && !Array.isArray(rawDetections)) {
    for (const [label, value] of Object.entries(rawDetections as Record<string, unknown>)) {
      const count = numberOr(value, null);
      if (count !== null) detections[label] = count;
    }
  }
  const confidence = Array.isArray(f[6]) ? (f[6] as unknown[]).map((count) => numberOr(count, 0)) : [];
  const candidate = f[7];
  return {
    deviceId,
    receivedAt,
    modelSha256: typeof f[0] === 'string' ? f[0] : null,
    frames: numberOr(f[1], 0),
    errors: numberOr(f[2], 0),
    windowS: numberOr(f[3], 0),
    latencyP95: numberOr(f[4], null),
    detectionsPer1000: detections,
    confidence,
    shadow:
      typeof candidate === 'string'
        ? {
            candidateSha256: candidate,
            compared: numberOr(f[8], 0),
            precision: numberOr(f[9], null),
            recall: numberOr(f[10], null),
            candidateLatencyP95: numberOr(f[11], null),
          }
        : null,
  };
}
