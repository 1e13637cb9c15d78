import type { DeviceView } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { groupBySite } from './sites.ts';

const device = (
  id: string,
  site: string | null,
  status: DeviceView['status'],
  health: DeviceView['health'],
): DeviceView => ({
  id,
  labels: site ? { site } : {},
  status,
  health,
  healthReasons: [],
  lastSeen: null,
  enrolledAt: 0,
  bootId: null,
  agentVersion: null,
});

describe('groupBySite', () => {
  it('counts each site by status and health, sites without a label together', () => {
    expect(
      groupBySite([
        device('a', 'north', 'online', 'healthy'),
        device('b', 'north', 'offline', 'offline'),
        device('c', 'harbour', 'online', 'degraded'),
        device('d', null, 'unknown', 'unknown'),
      ]),
    ).toEqual([
      { site: '(no site)', total: 1, online: 0, offline: 0, unknown: 1, degraded: 0 },
      { site: 'harbour', total: 1, online: 1, offline: 0, unknown: 0, degraded: 1 },
      { site: 'north', total: 2, online: 1, offline: 1, unknown: 0, degraded: 0 },
    ]);
  });
});
