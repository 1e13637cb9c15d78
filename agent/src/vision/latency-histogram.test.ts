import { describe, expect, it } from 'vitest';
import { createLatencyHistogram } from './latency-histogram.ts';

describe('latency histogram', () => {
  it('reports quantiles within 3 % of the exact ones and the exact max', () => {
    const h = createLatencyHistogram();
    for (let i = 1; i <= 10_000; i++) h.record(i / 100); // 0.01 .. 100 ms, uniform
    const s = h.summary();
    expect(s.count).toBe(10_000);
    expect(s.max).toBe(100);
    expect(Math.abs(s.p50 - 50) / 50).toBeLessThan(0.03);
    expect(Math.abs(s.p95 - 95) / 95).toBeLessThan(0.03);
    expect(Math.abs(s.p99 - 99) / 99).toBeLessThan(0.03);
  });

  it('is all zeros when empty and empties on reset', () => {
    const h = createLatencyHistogram();
    expect(h.summary()).toEqual({ count: 0, p50: 0, p95: 0, p99: 0, max: 0 });
    h.record(5);
    h.record(7);
    expect(h.sum).toBe(12);
    h.reset();
    expect(h.summary().count).toBe(0);
  });

  it('never reports a quantile outside the recorded range', () => {
    const h = createLatencyHistogram();
    for (let i = 0; i < 100; i++) h.record(12.3);
    expect(h.quantile(0.5)).toBe(12.3);
    expect(h.quantile(0.99)).toBe(12.3);
  });
});
