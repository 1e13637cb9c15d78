import type { SampleListQuery, SamplePrediction, SampleStrategyKind } from '@edgeloop/protocol';

/* The gallery's pure parts: its filter form as a samples query, box captions, and reading a body with progress. */

export type SampleFilters = {
  readonly deviceId: string;
  readonly site: string;
  /** `key=value` or `key:value`, comma or space separated. */
  readonly labels: string;
  /** name@version, as samples carry it. */
  readonly modelId: string;
  readonly strategy: '' | SampleStrategyKind;
  /** `datetime-local` values (the viewer's zone), or ''. */
  readonly from: string;
  readonly to: string;
  readonly hasLabels: '' | 'true' | 'false';
};

export const NO_SAMPLE_FILTERS: SampleFilters = {
  deviceId: '',
  site: '',
  labels: '',
  modelId: '',
  strategy: '',
  from: '',
  to: '',
  hasLabels: '',
};

/** The filters a URL's query names (`/samples?deviceId=cam-1`), the rest empty. */
export function filtersFromSearch(search: string): SampleFilters {
  const params = new URLSearchParams(search);
  const pick = (key: keyof SampleFilters) => params.get(key) ?? '';
  const strategy = pick('strategy');
  const hasLabels = pick('hasLabels');
  return {
    deviceId: pick('deviceId'),
    site: pick('site'),
    labels: pick('labels'),
    modelId: pick('modelId'),
    strategy: strategy as SampleFilters['strategy'],
    from: pick('from'),
    to: pick('to'),
    hasLabels: hasLabels === 'true' || hasLabels === 'false' ? hasLabels : '',
  };
}

/** A `datetime-local` value in the viewer's zone as epoch ms; undefined for '' or nonsense. */
export function localTimeToMs(value: string): number | undefined {
  if (!value.trim()) return undefined;
  const ms = new Date(value).getTime();
  return Number.isFinite(ms) && ms >= 0 ? ms : undefined;
}

/** The query of GET /api/v1/samples for the form's filters (empty fields are no filter). */
export function sampleQuery(filters: SampleFilters, limit: number, cursor?: string): Partial<SampleListQuery> {
  const query: Record<string, unknown> = { limit };
  const text = (value: string) => value.trim() || undefined;
  const set = (key: string, value: unknown) => {
    if (value !== undefined) query[key] = value;
  };
  set('deviceId', text(filters.deviceId));
  set('site', text(filters.site));
  set('modelId', text(filters.modelId));
  set('strategy', filters.strategy || undefined);
  set('from', localTimeToMs(filters.from));
  set('to', localTimeToMs(filters.to));
  if (filters.hasLabels) query.hasLabels = filters.hasLabels === 'true';
  const labels = filters.labels
    .split(/[\s,]+/)
    .filter(Boolean)
    .map((pair) => pair.replace('=', ':'));
  if (labels.length > 0) query.label = labels;
  if (cursor) query.cursor = cursor;
  return query as Partial<SampleListQuery>;
}

/** `car 0.62`: a box's class and score, for its caption. */
export function boxCaption(prediction: SamplePrediction): string {
  return `${prediction.label} ${prediction.score.toFixed(2)}`;
}

/**
 * A box in the image's own pixel space, clamped to the image and with its corners ordered, so an
 * SVG whose viewBox is the image size draws it over the (proportionally scaled) thumbnail.
 */
export function boxRect(
  box: readonly [number, number, number, number],
  image: { readonly width: number; readonly height: number },
): { x: number; y: number; width: number; height: number } {
  const clamp = (v: number, max: number) => Math.min(Math.max(v, 0), max);
  const x1 = clamp(Math.min(box[0], box[2]), image.width);
  const x2 = clamp(Math.max(box[0], box[2]), image.width);
  const y1 = clamp(Math.min(box[1], box[3]), image.height);
  const y2 = clamp(Math.max(box[1], box[3]), image.height);
  return { x: x1, y: y1, width: x2 - x1, height: y2 - y1 };
}

/**
 * Reads a body to its end, calling `onProgress` with the bytes received so far after each chunk.
 * The chunks come back for a Blob; an abort cancels the stream and rejects.
 */
export async function readWithProgress(
  body: ReadableStream<Uint8Array>,
  onProgress: (received: number) => void,
  signal?: AbortSignal,
): Promise<Uint8Array[]> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const abort = () => {
    void reader.cancel().catch(() => {});
  };
  signal?.addEventListener('abort', abort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (signal?.aborted) throw new Error('the download was cancelled');
      if (done) break;
      chunks.push(value);
      received += value.byteLength;
      onProgress(received);
    }
    return chunks;
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}
