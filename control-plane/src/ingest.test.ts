import { describe, expect, it } from 'vitest';
import { adaptBatchLimit } from './ingest.ts';

describe('adaptBatchLimit', () => {
  it('takes the rows that fit the budget at the cost per row just measured', () => {
    // 256 rows in 64 ms = 0.25 ms a row: 80 fit in 20 ms.
    expect(adaptBatchLimit(256, 256, 64, 20, 256)).toBe(80);
  });

  it('never goes below 16 rows however slow a row is, nor above the configured size', () => {
    expect(adaptBatchLimit(256, 10, 500, 20, 256)).toBe(16);
    expect(adaptBatchLimit(256, 256, 1, 20, 256)).toBe(256);
    expect(adaptBatchLimit(100, 10, 500, 20, 8)).toBe(8);
  });

  it('grows back by at most half (plus one) per batch when rows get cheap', () => {
    expect(adaptBatchLimit(40, 40, 0, 20, 256)).toBe(61);
    expect(adaptBatchLimit(200, 200, 0.1, 20, 256)).toBe(256);
  });

  it('keeps the limit when the batch had no rows to measure', () => {
    expect(adaptBatchLimit(73, 0, 5, 20, 256)).toBe(73);
  });
});
