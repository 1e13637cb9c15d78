import { describe, expect, it } from 'vitest';
import { nearShares } from './drift.ts';

describe('edgeloop drift table', () => {
  it('shows the near-threshold share as reference -> now, and one dash when neither is known yet', () => {
    expect(nearShares(0.12, 0.3)).toBe('0.12 -> 0.30');
    expect(nearShares(null, 0.3)).toBe('- -> 0.30');
    expect(nearShares(null, null)).toBe('-');
  });
});
