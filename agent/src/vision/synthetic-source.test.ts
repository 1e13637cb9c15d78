import { describe, expect, it } from 'vitest';
import { createSyntheticSource } from './synthetic-source.ts';

describe('synthetic source', () => {
  it('delivers frameCount deterministic frames of the asked size', async () => {
    const digests: number[] = [];
    for (let run = 0; run < 2; run++) {
      const source = createSyntheticSource({ width: 32, height: 24, frameCount: 5, distinctFrames: 3 });
      let sum = 0;
      let count = 0;
      await source.run((frame) => {
        expect(frame.data.length).toBe(32 * 24 * 3);
        expect(frame.index).toBe(count);
        count++;
        for (let i = 0; i < frame.data.length; i += 7) sum += frame.data[i] as number;
      }, new AbortController().signal);
      expect(count).toBe(5);
      expect(source.stats().framesDelivered).toBe(5);
      digests.push(sum);
    }
    expect(digests[0]).toBe(digests[1]);
    expect(digests[0]).toBeGreaterThan(0);
  });

  it('cycles frames the caller gives and stops when aborted', async () => {
    const a = new Uint8Array(2 * 2 * 3).fill(1);
    const b = new Uint8Array(2 * 2 * 3).fill(2);
    const source = createSyntheticSource({ width: 2, height: 2, frames: [a, b] });
    const controller = new AbortController();
    const seen: number[] = [];
    await source.run((frame) => {
      seen.push(frame.data[0] as number);
      if (seen.length === 5) controller.abort();
    }, controller.signal);
    expect(seen).toEqual([1, 2, 1, 2, 1]);
  });

  it('rejects given frames of the wrong size', () => {
    expect(() => createSyntheticSource({ width: 2, height: 2, frames: [new Uint8Array(5)] })).toThrow(/expected 12/);
  });
});
