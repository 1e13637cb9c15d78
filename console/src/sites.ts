import type { DeviceView } from '@edgeloop/protocol';

/* The site view: devices grouped by their `site` label, counted by status and health. */

export type SiteRow = {
  readonly site: string;
  readonly total: number;
  readonly online: number;
  readonly offline: number;
  readonly unknown: number;
  readonly degraded: number;
};

/** Devices without a site label are grouped under '(no site)'; sites sorted by name. */
export function groupBySite(devices: Iterable<DeviceView>): SiteRow[] {
  const sites = new Map<
    string,
    { total: number; online: number; offline: number; unknown: number; degraded: number }
  >();
  for (const device of devices) {
    const site = device.labels.site ?? '(no site)';
    const row = sites.get(site) ?? { total: 0, online: 0, offline: 0, unknown: 0, degraded: 0 };
    row.total++;
    row[device.status]++;
    if (device.health === 'degraded') row.degraded++;
    sites.set(site, row);
  }
  return [...sites.entries()].map(([site, row]) => ({ site, ...row })).sort((a, b) => a.site.localeCompare(b.site));
}
