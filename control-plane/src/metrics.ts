/*
 * A small Prometheus registry (text exposition format 0.0.4): counters and gauges with labels,
 * and summaries over a sliding window of recent observations. Values are counted in memory; no
 * per-message logging anywhere, everything that happens often is a metric here.
 */

export type Labels = Readonly<Record<string, string>>;

export type Counter = {
  inc(labels?: Labels, amount?: number): void;
  get(labels?: Labels): number;
};

export type Gauge = {
  set(value: number, labels?: Labels): void;
  get(labels?: Labels): number | undefined;
};

export type Summary = {
  observe(value: number): void;
  /** Quantile q (0..1) of the window, NaN when empty. */
  quantile(q: number): number;
  readonly count: number;
  readonly max: number;
};

/** Read at render time: one value, or labelled values. */
export type GaugeCollector = () => number | readonly (readonly [Labels, number])[];

export type MetricsRegistry = {
  counter(name: string, help: string): Counter;
  gauge(name: string, help: string, collect?: GaugeCollector): Gauge;
  summary(name: string, help: string, options?: { windowSize?: number; quantiles?: readonly number[] }): Summary;
  /** The whole registry in Prometheus text format. */
  render(): string;
};

const NAME_PATTERN = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return '';
  return `{${keys.map((key) => `${key}="${escapeLabel(labels[key]!)}"`).join(',')}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN';
  if (value === Number.POSITIVE_INFINITY) return '+Inf';
  if (value === Number.NEGATIVE_INFINITY) return '-Inf';
  return String(value);
}

type Entry = { readonly name: string; readonly help: string; readonly type: string; readonly lines: () => string[] };

export function createMetricsRegistry(): MetricsRegistry {
  const entries = new Map<string, Entry>();

  const register = (entry: Entry) => {
    if (!NAME_PATTERN.test(entry.name)) throw new Error(`invalid metric name ${entry.name}`);
    if (entries.has(entry.name)) throw new Error(`metric ${entry.name} registered twice`);
    entries.set(entry.name, entry);
  };

  return {
    counter(name, help) {
      const values = new Map<string, number>();
      register({
        name,
        help,
        type: 'counter',
        lines: () => [...values].map(([key, value]) => `${name}${key} ${formatValue(value)}`),
      });
      return {
        inc(labels, amount = 1) {
          const key = labelKey(labels);
          values.set(key, (values.get(key) ?? 0) + amount);
        },
        get(labels) {
          return values.get(labelKey(labels)) ?? 0;
        },
      };
    },

    gauge(name, help, collect) {
      const values = new Map<string, number>();
      register({
        name,
        help,
        type: 'gauge',
        lines: () => {
          const lines = [...values].map(([key, value]) => `${name}${key} ${formatValue(value)}`);
          if (collect) {
            const collected = collect();
            if (typeof collected === 'number') {
              lines.push(`${name} ${formatValue(collected)}`);
            } else {
              for (const [labels, value] of collected) lines.push(`${name}${labelKey(labels)} ${formatValue(value)}`);
            }
          }
          return lines;
        },
      });
      return {
        set(value, labels) {
          values.set(labelKey(labels), value);
        },
        get(labels) {
          return values.get(labelKey(labels));
        },
      };
    },

    summary(name, help, options = {}) {
      const windowSize = options.windowSize ?? 1024;
      const quantiles = options.quantiles ?? [0.5, 0.9, 0.99];
      const window: number[] = [];
      let next = 0;
      let count = 0;
      let sum = 0;
      let max = 0;
      const quantile = (q: number) => {
        if (window.length === 0) return Number.NaN;
        const sorted = [...window].sort((a, b) => a - b);
        return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
      };
      register({
        name,
        help,
        type: 'summary',
        lines: () => [
          ...quantiles.map((q) => `${name}{quantile="${q}"} ${formatValue(quantile(q))}`),
          `${name}_sum ${formatValue(sum)}`,
          `${name}_count ${count}`,
        ],
      });
      return {
        observe(value) {
          if (window.length < windowSize) window.push(value);
          else window[next] = value;
          next = (next + 1) % windowSize;
          count++;
          sum += value;
          if (value > max) max = value;
        },
        quantile,
        get count() {
          return count;
        },
        get max() {
          return max;
        },
      };
    },

    render() {
      const out: string[] = [];
      for (const entry of entries.values()) {
        out.push(`# HELP ${entry.name} ${entry.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`);
        out.push(`# TYPE ${entry.name} ${entry.type}`);
        out.push(...entry.lines());
      }
      return `${out.join('\n')}\n`;
    },
  };
}
