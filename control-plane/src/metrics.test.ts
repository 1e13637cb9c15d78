import { describe, expect, it } from 'vitest';
import { createMetricsRegistry } from './metrics.ts';

describe('metrics registry', () => {
  it('renders counters, gauges and summaries in Prometheus text format', () => {
    const registry = createMetricsRegistry();
    const rejected = registry.counter('edgeloop_rejected_total', 'Rejected messages');
    rejected.inc({ reason: 'invalid_json' });
    rejected.inc({ reason: 'invalid_json' }, 2);
    rejected.inc({ reason: 'a "quoted"\nreason' });
    registry.gauge('edgeloop_queue_depth', 'Queue depth', () => 7);
    registry.gauge('edgeloop_by_status', 'By status', () => [[{ status: 'online' }, 3]]);
    const flush = registry.summary('edgeloop_flush_seconds', 'Flush seconds', { quantiles: [0.5, 0.99] });
    for (let i = 1; i <= 100; i++) flush.observe(i);

    const text = registry.render();
    expect(text).toContain(
      '# HELP edgeloop_rejected_total Rejected messages\n# TYPE edgeloop_rejected_total counter\n',
    );
    expect(text).toContain('edgeloop_rejected_total{reason="invalid_json"} 3\n');
    expect(text).toContain('edgeloop_rejected_total{reason="a \\"quoted\\"\\nreason"} 1\n');
    expect(text).toContain('edgeloop_queue_depth 7\n');
    expect(text).toContain('edgeloop_by_status{status="online"} 3\n');
    expect(text).toContain('# TYPE edgeloop_flush_seconds summary\n');
    expect(text).toContain('edgeloop_flush_seconds{quantile="0.5"} 51\n');
    expect(text).toContain('edgeloop_flush_seconds{quantile="0.99"} 100\n');
    expect(text).toContain('edgeloop_flush_seconds_count 100\n');
    expect(text).toContain('edgeloop_flush_seconds_sum 5050\n');
    expect(flush.max).toBe(100);
  });

  it('keeps summaries over a sliding window', () => {
    const summary = createMetricsRegistry().summary('x_ms', 'x', { windowSize: 10 });
    for (let i = 0; i < 10; i++) summary.observe(1_000);
    for (let i = 0; i < 10; i++) summary.observe(1);
    expect(summary.quantile(0.99)).toBe(1);
    expect(summary.count).toBe(20);
    expect(summary.max).toBe(1_000);
  });

  it('refuses a name registered twice or an invalid name', () => {
    const registry = createMetricsRegistry();
    registry.counter('a_total', 'a');
    expect(() => registry.counter('a_total', 'a')).toThrow(/twice/);
    expect(() => registry.gauge('bad-name', 'b')).toThrow(/invalid/);
  });
});
