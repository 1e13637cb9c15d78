import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { MetricsRegistry } from './metrics.ts';

export type EventLoopMonitor = { stop(): void; reset(): void; p99Ms(): number; maxMs(): number };

/**
 * Event-loop delay, sampled continuously with perf_hooks and exposed as gauges in seconds
 * (Prometheus base unit); p99Ms()/maxMs() give milliseconds to in-process readers.
 * A long synchronous stretch (a big SQLite commit, a huge JSON parse) shows up here.
 */
export function monitorEventLoop(metrics: MetricsRegistry): EventLoopMonitor {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const p99Ms = () => histogram.percentile(99) / 1e6;
  const maxMs = () => histogram.max / 1e6;
  metrics.gauge(
    'edgeloop_event_loop_delay_p99_seconds',
    'Event-loop delay, 99th percentile since start (seconds)',
    () => p99Ms() / 1000,
  );
  metrics.gauge(
    'edgeloop_event_loop_delay_max_seconds',
    'Event-loop delay, maximum since start (seconds)',
    () => maxMs() / 1000,
  );
  // Process memory, the usual Prometheus names (read when scraped).
  metrics.gauge('process_resident_memory_bytes', 'Resident set size (bytes)', () => process.memoryUsage.rss());
  metrics.gauge('nodejs_heap_used_bytes', 'V8 heap in use (bytes)', () => process.memoryUsage().heapUsed);
  metrics.gauge('nodejs_heap_total_bytes', 'V8 heap reserved (bytes)', () => process.memoryUsage().heapTotal);
  metrics.gauge(
    'nodejs_external_memory_bytes',
    'Memory of C++ objects bound to JS, buffers included (bytes)',
    () => process.memoryUsage().external,
  );
  return { stop: () => histogram.disable(), reset: () => histogram.reset(), p99Ms, maxMs };
}
