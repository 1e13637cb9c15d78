import type { TelemetryHistory } from '@edgeloop/protocol';

/*
 * The device page's telemetry as chart series (pure: no DOM, so it is tested in Node). One series
 * per measure, aligned on the points' times; a missing value is null (a gap in the line).
 */

/** A chart's series, as chart.tsx draws them. */
export type ChartSeries = {
  readonly label: string;
  readonly values: readonly (number | null)[];
  readonly scale?: string;
};

/** Telemetry points of a range by the device's own timestamps, oldest first, for the charts. */
export function telemetrySeries(items: TelemetryHistory['items'], from: number) {
  const points = items.filter((item) => item.message.ts >= from).sort((a, b) => a.message.ts - b.message.ts);
  // Every thermal zone any point of the range reported (Jetson: CPU-therm, GPU-therm, ...), by name.
  const zoneNames = [...new Set(points.flatMap((p) => Object.keys(p.message.system.temperatures.zones)))].sort();
  const hasSamples = points.some((p) => p.message.samples !== undefined);
  return {
    times: points.map((p) => p.message.ts / 1000),
    fps: points.map((p) => p.message.pipeline?.fps ?? null),
    p95: points.map((p) => p.message.pipeline?.latencyMs.inference?.p95 ?? null),
    cpuC: points.map((p) => p.message.system.temperatures.cpuC),
    gpuC: points.map((p) => p.message.system.temperatures.gpuC),
    zones: zoneNames.map((name) => ({
      name,
      values: points.map((p) => p.message.system.temperatures.zones[name] ?? null),
    })),
    cpuLoad: points.map((p) => p.message.system.cpu.loadPct),
    gpuLoad: points.map((p) => p.message.system.gpu?.loadPct ?? null),
    /** Hard samples waiting in the device's upload spool; null where capture is not configured. */
    spooled: hasSamples ? points.map((p) => p.message.samples?.spooled ?? null) : null,
    /** Messages waiting in the device's outbox (for the link) and the bytes they hold, in KiB. */
    outboxPending: points.map((p) => p.message.outbox?.pending ?? null),
    outboxKiB: points.map((p) => (p.message.outbox ? p.message.outbox.pendingBytes / 1024 : null)),
  };
}

/**
 * The device page's charts over a range: pipeline, temperatures (CPU, GPU and every thermal zone),
 * load, the outbox, and the hard-sample spool; a chart whose series have no value in the range is left out.
 */
export function telemetryCharts(
  series: ReturnType<typeof telemetrySeries>,
): { title: string; series: ChartSeries[] }[] {
  const charts: { title: string; series: ChartSeries[] }[] = [
    {
      title: 'fps and inference p95 (ms)',
      series: [
        { label: 'fps', values: series.fps, scale: 'fps' },
        { label: 'inference p95 ms', values: series.p95, scale: 'ms' },
      ],
    },
    {
      title: 'Temperatures (°C)',
      series: [
        { label: 'CPU °C', values: series.cpuC, scale: 'c' },
        { label: 'GPU °C', values: series.gpuC, scale: 'c' },
        ...series.zones.map((zone) => ({ label: `${zone.name} °C`, values: zone.values, scale: 'c' })),
      ],
    },
    {
      title: 'CPU and GPU load (%)',
      series: [
        { label: 'CPU load %', values: series.cpuLoad, scale: 'pct' },
        { label: 'GPU load %', values: series.gpuLoad, scale: 'pct' },
      ],
    },
    {
      title: 'Outbox: messages waiting for the link',
      series: [
        { label: 'messages waiting', values: series.outboxPending, scale: 'n' },
        { label: 'KiB waiting', values: series.outboxKiB, scale: 'kib' },
      ],
    },
    {
      title: 'Hard samples waiting to upload (spool)',
      series: series.spooled ? [{ label: 'samples in spool', values: series.spooled, scale: 'n' }] : [],
    },
  ];
  return charts
    .map((chart) => ({ ...chart, series: chart.series.filter((s) => present(s.values)) }))
    .filter((chart) => chart.series.length > 0);
}

/** A series worth drawing: at least one point has a value. */
function present(values: readonly (number | null)[]): boolean {
  return values.some((v) => v !== null);
}
