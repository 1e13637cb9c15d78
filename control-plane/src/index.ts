export { type CommandError, type CommandRequest, type ControlBroker, createBroker } from './broker.ts';
export {
  Config,
  ConfigError,
  type ConfigInput,
  describeSettings,
  type LoadConfigOptions,
  loadConfig,
  SETTINGS,
} from './config.ts';
export {
  type ControlPlane,
  type ControlPlaneDeps,
  type ControlPlaneInternals,
  createControlPlane,
  PortInUseError,
  type StartedControlPlane,
  VERSION,
} from './control-plane.ts';
export { createPostgresStore, type PostgresStore } from './db/postgres/store.ts';
export type * from './db/repositories.ts';
export { createSqliteStore, type SqliteStore } from './db/sqlite/store.ts';
export {
  BUS_EVENT_TYPES,
  type BusEvents,
  type BusEventType,
  type BusMessage,
  createEventBus,
  type EventBus,
} from './events.ts';
export type { DesiredChange, Fleet, MqttEndpoint } from './fleet.ts';
export {
  assessHealth,
  digestTelemetry,
  type HealthAssessment,
  type HealthInput,
  type HealthThresholds,
} from './health.ts';
export { ApiError } from './http/api-error.ts';
export { createApp } from './http/app.ts';
export { defineRoute, type Route } from './http/route.ts';
export type { IngestStats, IngestWriter } from './ingest.ts';
export { createMetricsRegistry, type MetricsRegistry } from './metrics.ts';
export { type BlobStore, createBlobStore, type ReceivedBlob } from './models/blob-store.ts';
export {
  createModelRegistry,
  type DownloadTracker,
  type ModelRegistry,
  toModelAssignment,
  toModelSummary,
  toModelView,
} from './models/registry.ts';
export { loadTrustedKeys } from './models/trusted-keys.ts';
export { createMqttFront, type MqttFront, type MqttFrontStats, type RejectCause } from './mqtt-front.ts';
export { createFrameScanner, type FrameScanner, type FrameViolation } from './mqtt-front-frames.ts';
export { createDeviceIssues, type DeviceIssues } from './mqtt-front-issues.ts';
export { type Cohorts, selectCohorts, type TargetDevice } from './rollouts/cohorts.ts';
export {
  createRolloutEngine,
  ROLLOUT_LEADER_LOCK_KEY,
  type RolloutEngine,
  type RolloutEngineDeps,
  type TickReport,
} from './rollouts/engine.ts';
export { type DeviceWindow, evaluateStage, type StageEvaluation } from './rollouts/gates.ts';
export { type DryRunPlan, dryRun, plan, type RolloutState, type Step } from './rollouts/plan.ts';
export { createRolloutService, type RolloutAction, type RolloutService } from './rollouts/service.ts';
export { buildDeviceWindows } from './rollouts/windows.ts';
export type { Clock } from './time.ts';
