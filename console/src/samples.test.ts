import { describe, expect, it } from 'vitest';
import { boxCaption, boxRect, filtersFromSearch, NO_SAMPLE_FILTERS, readWithProgress, sampleQuery } from './samples.ts';

describe('sampleQuery', () => {
  it('sends only the filled filters, labels as key:value, the time range as epoch ms', () => {
    expect(sampleQuery(NO_SAMPLE_FILTERS, 24)).toEqual({ limit: 24 });
    const from = '2026-01-02T03:04';
    expect(
      sampleQuery(
        {
          ...NO_SAMPLE_FILTERS,
          deviceId: ' cam-1 ',
          labels: 'hardware=rpi5, zone:a',
          modelId: 'det@1.0.0',
          strategy: 'class-rare',
          from,
          to: 'not a time',
          hasLabels: 'false',
        },
        10,
        'c1',
      ),
    ).toEqual({
      limit: 10,
      deviceId: 'cam-1',
      label: ['hardware:rpi5', 'zone:a'],
      modelId: 'det@1.0.0',
      strategy: 'class-rare',
      from: new Date(from).getTime(),
      hasLabels: false,
      cursor: 'c1',
    });
  });

  it('reads the filters a link puts in the URL, ignoring values no filter takes', () => {
    expect(filtersFromSearch('?deviceId=gate-cam&hasLabels=maybe')).toEqual({
      ...NO_SAMPLE_FILTERS,
      deviceId: 'gate-cam',
    });
  });
});

describe('boxes', () => {
  it('orders and clamps a box to the image, and captions it with class and score', () => {
    expect(boxRect([300, 50, 100, -20], { width: 200, height: 100 })).toEqual({ x: 100, y: 0, width: 100, height: 50 });
    expect(boxCaption({ box: [0, 0, 1, 1], score: 0.5249, classId: 0, label: 'car' })).toBe('car 0.52');
  });
});

describe('readWithProgress', () => {
  it('reports the bytes received after each chunk and returns every chunk', async () => {
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new Uint8Array(3));
        controller.enqueue(new Uint8Array(5));
        controller.close();
      },
    });
    const seen: number[] = [];
    const chunks = await readWithProgress(body, (n) => seen.push(n));
    expect(seen).toEqual([3, 8]);
    expect(chunks.map((c) => c.byteLength)).toEqual([3, 5]);
  });

  it('stops and rejects when the download is cancelled', async () => {
    const controller = new AbortController();
    const body = new ReadableStream<Uint8Array>({
      pull(stream) {
        stream.enqueue(new Uint8Array(1));
        controller.abort();
      },
    });
    await expect(readWithProgress(body, () => {}, controller.signal)).rejects.toThrow('cancelled');
  });
});
