import { describe, expect, it } from 'vitest';
import { foldCounts, mergeLabels } from './devices.ts';

describe('mergeLabels', () => {
  it('sets the keys a patch names, removes those it sets to null, and keeps the others', () => {
    const labels = { site: 'north', line: '2', zone: 'a' };
    expect(mergeLabels(labels, { site: 'south', zone: null, shift: 'night' })).toEqual({
      site: 'south',
      line: '2',
      shift: 'night',
    });
    expect(labels).toEqual({ site: 'north', line: '2', zone: 'a' });
  });

  it('ignores a null for a key that is not there', () => {
    expect(mergeLabels({ site: 'north' }, { zone: null })).toEqual({ site: 'north' });
  });
});

describe('foldCounts', () => {
  it('sums the (status, health) groups into totals by status and by health, and keeps the reasons', () => {
    const counts = foldCounts(
      [
        { status: 'online', health: 'healthy', n: 3 },
        { status: 'online', health: 'degraded', n: 2 },
        { status: 'offline', health: 'offline', n: 1 },
      ],
      [
        { reason: 'stale_telemetry', n: 2 },
        { reason: 'revoked', n: 1 },
      ],
    );
    expect(counts).toEqual({
      total: 6,
      byStatus: { online: 5, offline: 1 },
      byHealth: { healthy: 3, degraded: 2, offline: 1 },
      byHealthReason: { stale_telemetry: 2, revoked: 1 },
    });
  });

  it('counts an empty fleet as zero everywhere', () => {
    expect(foldCounts([], [])).toEqual({ total: 0, byStatus: {}, byHealth: {}, byHealthReason: {} });
  });
});
