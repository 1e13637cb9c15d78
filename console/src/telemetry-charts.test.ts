import type { TelemetryHistory } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { telemetryCharts, telemetrySeries } from './telemetry-charts.ts';

type Item = TelemetryHistory['items'][number];

function point(ts: number, extra: Record<string, unknown> = {}): Item {
  return {
    message: {
      ts,
      system: { cpu: { loadPct: 30 }, gpu: null, temperatures: { cpuC: 50, gpuC: null, zones: {} } },
      ...extra,
    },
  } as unknown as Item;
}

describe('telemetry charts', () => {
  it('charts the outbox depth and bytes where telemetry carries them, oldest first, with gaps as null', () => {
    const items = [
      point(3_000, { outbox: { pending: 7, pendingBytes: 2048, maxBytes: 1 << 20, droppedTotal: 0 } }),
      point(1_000, { outbox: { pending: 2, pendingBytes: 512, maxBytes: 1 << 20, droppedTotal: 0 } }),
      point(2_000),
    ];
    const series = telemetrySeries(items, 0);
    expect(series.times).toEqual([1, 2, 3]);
    expect(series.outboxPending).toEqual([2, null, 7]);
    expect(series.outboxKiB).toEqual([0.5, null, 2]);
    const outbox = telemetryCharts(series).find((chart) => chart.title.startsWith('Outbox'));
    expect(outbox?.series.map((s) => s.label)).toEqual(['messages waiting', 'KiB waiting']);
  });

  it('leaves the outbox chart out for agents that do not report it, and points before the range out', () => {
    const series = telemetrySeries([point(500), point(1_500), point(2_500)], 1_000);
    expect(series.times).toEqual([1.5, 2.5]);
    const titles = telemetryCharts(series).map((chart) => chart.title);
    expect(titles.some((title) => title.startsWith('Outbox'))).toBe(false);
    expect(titles).toContain('CPU and GPU load (%)');
  });
});
