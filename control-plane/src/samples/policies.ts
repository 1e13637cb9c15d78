import type {
  Desired,
  SamplePolicy,
  SamplePolicyView,
  SetSamplePolicyRequest,
  SetSamplePolicyResponse,
} from '@edgeloop/protocol';
import type { DeviceRepository, SamplePolicyRepository } from '../db/repositories.ts';
import type { Fleet } from '../fleet.ts';
import type { Clock } from '../time.ts';
import { effectivePolicy, sameJson } from './policy-selectors.ts';

/*
 * Sample policies by label selector (PUT /api/v1/sample-policy). A selector's policy is stored,
 * then every active device the selector matches gets its effective policy (the most specific
 * selector it matches, see policy-selectors.ts) copied into its desired state, which the fleet
 * publishes retained. Devices enrolled later, or whose labels change, get theirs from the fleet
 * (FleetDeps.samplePolicies).
 */

/** Devices whose desired state is written and published at once. */
const PUBLISH_CONCURRENCY = 16;

export type SamplePolicyServiceDeps = {
  readonly policies: SamplePolicyRepository;
  readonly devices: Pick<DeviceRepository, 'snapshots'>;
  readonly fleet: Pick<Fleet, 'setDesired'>;
  readonly clock: Clock;
};

export type SamplePolicyService = {
  set(request: SetSamplePolicyRequest, by: string | null): Promise<SetSamplePolicyResponse>;
  list(): Promise<SamplePolicyView[]>;
};

export function createSamplePolicyService(deps: SamplePolicyServiceDeps): SamplePolicyService {
  return {
    async set(request, by) {
      const selector = request.selector.labels;
      if (request.policy === null) await deps.policies.remove(selector);
      else await deps.policies.put({ selector, policy: request.policy, updatedAt: deps.clock.now(), updatedBy: by });
      const records = await deps.policies.list();
      const matched = await deps.devices.snapshots({ labels: Object.entries(selector) });
      let changed = 0;
      let next = 0;
      // A few devices at a time: each is one desired-state transaction and one retained publish.
      const worker = async () => {
        while (next < matched.length) {
          const device = matched[next++] as (typeof matched)[number];
          const policy = effectivePolicy(records, device.labels);
          if (sameJson(policy, device.desired?.samplePolicy ?? null)) continue;
          // A device that never had a policy and now has none needs no new desired version.
          if (policy === null && device.desired?.samplePolicy === undefined) continue;
          const desired = await deps.fleet.setDesired(device.id, { samplePolicy: policy as Desired['samplePolicy'] });
          if (desired) changed += 1;
        }
      };
      await Promise.all(Array.from({ length: Math.min(PUBLISH_CONCURRENCY, matched.length) }, worker));
      return { selector: { labels: { ...selector } }, policy: request.policy, devices: matched.length, changed };
    },

    async list() {
      const records = await deps.policies.list();
      return records.map((record) => ({
        selector: { labels: { ...record.selector } },
        policy: record.policy as SamplePolicy,
        updatedAt: record.updatedAt,
        updatedBy: record.updatedBy,
      }));
    },
  };
}
