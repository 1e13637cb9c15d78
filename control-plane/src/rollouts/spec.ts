/*
 * The rollout spec is part of the HTTP API (the CLI, the simulator's scenario files and the
 * dashboard write it, and none of them may import the control plane), so its schemas live in
 * @edgeloop/protocol (api.ts). Re-exported here for the planner.
 */
export {
  AbortSpec,
  CanarySpec,
  DEFAULT_STAGES,
  EvidenceSpec,
  GateSpec,
  MaintenanceWindow,
  RolloutSpec,
  type RolloutSpecInput,
  StageSpec,
  ValidationSpec,
} from '@edgeloop/protocol';
