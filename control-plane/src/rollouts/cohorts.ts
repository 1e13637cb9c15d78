import type { CanarySpec, MaintenanceWindow, RolloutSpec, StageSpec } from './spec.ts';

/** What cohort selection needs to know about a target device. */
export type TargetDevice = {
  readonly id: string;
  readonly hardware: string | null;
  readonly site: string | null;
};

export type Cohorts = {
  /** Devices that try the model first (shadow, then live). */
  readonly canary: readonly string[];
  /** Devices kept on the current model for comparison until the last stage. */
  readonly control: readonly string[];
  /** Every target device in the order stages take them: canary first, control last. */
  readonly order: readonly string[];
};

/** A stable number in [0, 1) for a device within a rollout (FNV-1a), so choices survive restarts. */
export function stableUnit(rolloutId: string, deviceId: string): number {
  let hash = 0x811c9dc5;
  const text = `${rolloutId}:${deviceId}`;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash / 0x1_0000_0000;
}

function groupKey(device: TargetDevice): string {
  return `${device.hardware ?? '?'}|${device.site ?? '?'}`;
}

/**
 * Chooses a canary cohort that covers every (hardware, site) combination in the target, a control
 * cohort matched to it group by group, and the order in which stages take devices. Deterministic
 * for a rollout id and a target set.
 */
export function selectCohorts(rolloutId: string, targets: readonly TargetDevice[], spec: CanarySpec): Cohorts {
  const byHash = [...targets].sort(
    (a, b) => stableUnit(rolloutId, a.id) - stableUnit(rolloutId, b.id) || (a.id < b.id ? -1 : 1),
  );
  const groups = new Map<string, TargetDevice[]>();
  for (const device of byHash) {
    const key = groupKey(device);
    const members = groups.get(key);
    if (members) members.push(device);
    else groups.set(key, [device]);
  }
  const groupKeys = [...groups.keys()].sort();
  // A control cohort is only possible where a group has more than its canary share; small
  // targets keep at least half of the devices for control.
  const maxCanary = Math.min(spec.maxSize, Math.max(1, Math.floor(targets.length / 2)));

  const canary: string[] = [];
  const taken = new Set<string>();
  const take = (device: TargetDevice, into: string[]) => {
    into.push(device.id);
    taken.add(device.id);
  };
  // Round robin over groups so every combination is covered before any gets a second device.
  for (let round = 0; round < spec.perGroup && canary.length < maxCanary; round++) {
    for (const key of groupKeys) {
      const device = groups.get(key)?.[round];
      if (device && canary.length < maxCanary) take(device, canary);
    }
  }
  for (const device of byHash) {
    if (canary.length >= Math.min(spec.minSize, maxCanary)) break;
    if (!taken.has(device.id)) take(device, canary);
  }

  // Control: mirror the canary's groups with devices not taken.
  const control: string[] = [];
  const canaryGroups = canary.map((id) => groupKey(targets.find((device) => device.id === id) as TargetDevice));
  for (const key of canaryGroups) {
    const device = groups.get(key)?.find((member) => !taken.has(member.id));
    if (device) take(device, control);
  }
  for (const device of byHash) {
    if (control.length >= canary.length) break;
    if (!taken.has(device.id)) take(device, control);
  }

  const controlSet = new Set(control);
  const middle = byHash.filter((device) => !taken.has(device.id) && !controlSet.has(device.id)).map((d) => d.id);
  return { canary, control, order: [...canary, ...middle, ...control] };
}

/** How many devices (a prefix of `order`) run the candidate once a stage is reached. */
export function stageSize(stage: StageSpec, cohorts: Cohorts): number {
  const total = cohorts.order.length;
  if (stage.kind === 'shadow' || stage.kind === 'canary') return cohorts.canary.length;
  const wanted = Math.ceil(((stage.percent ?? 100) / 100) * total);
  return Math.min(total, Math.max(cohorts.canary.length, wanted));
}

/** Devices of the control cohort still free to compare against at a stage. */
export function controlAt(stage: StageSpec, cohorts: Cohorts): readonly string[] {
  const size = stageSize(stage, cohorts);
  const inStage = new Set(cohorts.order.slice(0, size));
  return cohorts.control.filter((id) => !inStage.has(id));
}

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(':').map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/** Whether `now` lies inside any maintenance window (UTC); no windows means always. */
export function inMaintenanceWindow(windows: readonly MaintenanceWindow[], now: number): boolean {
  if (windows.length === 0) return true;
  const date = new Date(now);
  const minute = date.getUTCHours() * 60 + date.getUTCMinutes();
  const day = date.getUTCDay();
  return windows.some((window) => {
    const start = minutesOf(window.start);
    const end = minutesOf(window.end);
    if (start <= end) {
      return (!window.days || window.days.includes(day)) && minute >= start && minute < end;
    }
    // Wraps midnight: the part after midnight belongs to the previous day's window.
    if (minute >= start) return !window.days || window.days.includes(day);
    const previousDay = (day + 6) % 7;
    return minute < end && (!window.days || window.days.includes(previousDay));
  });
}

/** When a device may start its download in a stage: the stage start plus its stable jitter. */
export function dueAt(rolloutId: string, deviceId: string, stageStartedAt: number, spec: RolloutSpec): number {
  return stageStartedAt + Math.floor(stableUnit(`${rolloutId}/jitter`, deviceId) * spec.jitterS * 1000);
}
