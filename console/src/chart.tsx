import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';

/* A time-series chart (uPlot: canvas, made for many points). x is seconds since the epoch. */

import type { ChartSeries } from './telemetry-charts.ts';

export type { ChartSeries };

export function TimeChart(props: {
  title: string;
  times: readonly number[];
  series: readonly ChartSeries[];
  height?: number;
  /** Horizontal bands to shade on the first scale, e.g. where a gate fails: [from, to] each. */
  bands?: readonly { readonly from: number; readonly to: number }[];
}) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const colours = ['#2563eb', '#d97706', '#059669', '#9333ea'];
    const bands = props.bands ?? [];
    const first = props.times[0];
    const single = first !== undefined && props.times.every((t) => t === first) ? first : null;
    const options: uPlot.Options = {
      title: props.title,
      width: Math.max(280, element.clientWidth),
      height: props.height ?? 220,
      // uPlot widens a single point's time axis to 1,000 days; a first window gets a minute each side.
      scales: {
        x: { time: true, range: (_u, min, max) => (single === null ? [min, max] : [single - 60, single + 60]) },
      },
      series: [
        {},
        ...props.series.map((series, i) => ({
          label: series.label,
          stroke: colours[i % colours.length]!,
          width: 2,
          dash: i % 2 === 1 ? [6, 4] : undefined,
          scale: series.scale ?? 'y',
          spanGaps: false,
        })),
      ],
      axes: [
        {},
        { scale: props.series[0]?.scale ?? 'y', label: props.series[0]?.label },
        ...(props.series.some((s) => s.scale && s.scale !== (props.series[0]?.scale ?? 'y'))
          ? [{ scale: props.series.find((s) => s.scale && s.scale !== props.series[0]?.scale)!.scale!, side: 1 }]
          : []),
      ],
      hooks:
        bands.length > 0
          ? {
              drawClear: [
                (u: uPlot) => {
                  const scale = props.series[0]?.scale ?? 'y';
                  u.ctx.save();
                  u.ctx.fillStyle = 'rgba(220, 38, 38, 0.12)';
                  for (const band of bands) {
                    const top = u.valToPos(band.to, scale, true);
                    const bottom = u.valToPos(band.from, scale, true);
                    u.ctx.fillRect(u.bbox.left, Math.min(top, bottom), u.bbox.width, Math.abs(bottom - top));
                  }
                  u.ctx.restore();
                },
              ],
            }
          : {},
    };
    const data: uPlot.AlignedData = [
      Float64Array.from(props.times),
      ...props.series.map((series) => series.values.map((v) => (v === null ? null : v)) as (number | null)[]),
    ];
    const plot = new uPlot(options, data, element);
    const resize = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(280, element.clientWidth), height: options.height }),
    );
    resize.observe(element);
    return () => {
      resize.disconnect();
      plot.destroy();
    };
  }, [props.title, props.times, props.series, props.height, props.bands]);
  return <div class="chart" ref={host} role="img" aria-label={props.title} />;
}
