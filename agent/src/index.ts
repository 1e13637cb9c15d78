// The agent's reusable parts, for the simulator (thousands of devices in one process) and tests.
export { type Agent, type AgentDeps, type AgentEvent, createAgent } from './agent.ts';
export { type Clock, systemClock, systemTimers, type TimerHandle, type Timers } from './clock.ts';
export {
  type BuiltinCommandDeps,
  type CommandContext,
  CommandError,
  type CommandHandler,
  type CommandStats,
  type Commands,
  type CommandsDeps,
  createCommands,
  registerBuiltinCommands,
} from './commands.ts';
export {
  AgentConfig,
  type ConfigError,
  type ConfigProblem,
  diffConfig,
  ENV_OVERRIDES,
  formatConfigProblems,
  type LoadConfigInput,
  type LoadConfigResult,
  LogLevel,
  loadConfig,
  ModelsConfig,
  MqttConfig,
  OutboxFsync,
  ReconnectConfig,
} from './config.ts';
export {
  createDesiredState,
  createFileDesiredStore,
  createMemoryDesiredStore,
  type DesiredApplier,
  type DesiredState,
  type DesiredStateDeps,
  type DesiredStateStats,
  type DesiredStore,
  type ReportedExtras,
  writeFileAtomic,
} from './desired-state.ts';
export { parseDevfreqLoad, readGpuLoadPct, readThermalZones, type ThermalReadings } from './jetson-sysfs.ts';
export {
  type BirthInfo,
  clientOverStream,
  computeBackoffMs,
  createLink,
  type Link,
  type LinkDeps,
  type LinkMqttSettings,
  type LinkState,
  type LinkStats,
  type ReconnectPolicy,
} from './link.ts';
export { createRecordingLogger, type LogFn, type Logger, type LogLine, silentLogger } from './logger.ts';
export {
  type AssignmentDecision,
  type AssignmentInput,
  decideAssignment,
  isSameTarget,
} from './model-update/assignment.ts';
/*
 * Model updates. A simulator plugs in like this (one per virtual device; keep the storage object
 * across a simulated reboot, like the memory outbox):
 *
 *   const storage = createMemoryModelStorage();          // slots, downloads (hashed, not kept), update record
 *   const runtime: ModelRuntime = new SimulatedRuntime(profile);   // load/warm/activate/shadow/healthCheck/release
 *   createAgent({ config, modelRuntime: runtime, modelStorage: storage, ... })
 *
 * The agent then builds the manager itself (desired `model` applier, Reported.model, telemetry
 * `shadow` from runtime.shadowMetrics()). Or use createModelManager({ runtime, storage, ... })
 * directly. A fake runtime decides outcomes through its results: reject load/warm with a
 * ModelRuntimeError code to play a model that does not load; return judgeHealth(...) from
 * healthCheck with the numbers its profile gives (health_latency, health_empty_output, ...).
 * Downloads still go over HTTP (Range, capped at the release size, Basic device credential).
 */
export {
  createMemoryDownloadTarget,
  type DownloadErrorCode,
  type DownloadOptions,
  type DownloadOutcome,
  type DownloadTarget,
  downloadModel,
  downloadWithRetry,
  fileDownloadTarget,
  isRetryable,
  type MemoryDownloadTarget,
  type RetryPolicy,
} from './model-update/download.ts';
export {
  DEFAULT_HEALTH_CRITERIA,
  type HealthBaseline,
  type HealthCode,
  type HealthCriteria,
  type HealthObservation,
  type HealthVerdict,
  healthReady,
  judgeHealth,
  latencyBudget,
} from './model-update/health.ts';
export {
  ALREADY_ACTIVE,
  createModelManager,
  DEFAULT_MODEL_MANAGER_OPTIONS,
  type ModelManager,
  type ModelManagerDeps,
  type ModelManagerEvent,
  type ModelManagerOptions,
  type ModelManagerStats,
  ModelUpdateError,
  type ReportedModel,
} from './model-update/manager.ts';
export {
  type HealthCheckRequest,
  type LoadRequest,
  type ModelHandle,
  type ModelRuntime,
  ModelRuntimeError,
} from './model-update/runtime.ts';
export {
  type ClassCounts,
  iou,
  MAX_SHADOW_CLASSES,
  matchDetections,
  ShadowWindow,
  shadowMetricsOf,
} from './model-update/shadow-match.ts';
export { SLOT_NAMES, type SlotEntry, type SlotName, type SlotTable } from './model-update/slots.ts';
export {
  type ByteFacts,
  createFileModelStorage,
  createMemoryModelStorage,
  type MemoryModelStorageOptions,
  type ModelLocation,
  type ModelStorage,
  StorageError,
} from './model-update/storage.ts';
export {
  FINAL_STATES,
  isSwitched,
  MAX_LOAD_ATTEMPTS,
  nextProgress,
  TRANSITIONS,
  UPDATE_STATES,
  type UpdateEvent,
  type UpdateProgress,
  type UpdateState,
} from './model-update/transitions.ts';
export { ManagerState, UpdateRecord } from './model-update/update-record.ts';
export {
  type AppendInput,
  type AppendResult,
  createMemoryOutbox,
  createOutbox,
  ENTRY_OVERHEAD_BYTES,
  entryBytes,
  type JournalStats,
  LANES,
  type Lane,
  type LaneCounts,
  laneOf,
  type Outbox,
  type OutboxDeps,
  type OutboxEntry,
  type OutboxJournal,
  type OutboxStats,
} from './outbox.ts';
export {
  type FileOutbox,
  type FileOutboxOptions,
  openFileOutbox,
  outboxDiskBytes,
  type RecoveryStats,
  readOutboxDir,
  type StoredEntry,
  scanSegment,
} from './outbox-file.ts';
export {
  createPublisher,
  type MessageBody,
  type PublishError,
  type Publisher,
  type PublisherDeps,
  type PublisherStats,
} from './publisher.ts';
export { type Budget, createBudget, type LimitVerdict } from './samples/budget.ts';
export {
  type CaptureFrameInput,
  type CaptureOutcome,
  createSampleCapture,
  type SampleCapture,
  type SampleCaptureDeps,
} from './samples/capture.ts';
export { redactAndEncode } from './samples/encode.ts';
export { decidePolicy, type PolicyDecision, parseSamplePolicy } from './samples/policy.ts';
export { type Selection, type SelectionInput, selectFrame } from './samples/select.ts';
export { openSpool, type Spool, type SpoolEntry } from './samples/spool.ts';
export { createSampleUploader, type SampleUploader } from './samples/uploader.ts';
export { createSeededRandom, seedOf } from './seeded-random.ts';
export { createBootId, createSequencer, type Sequencer, type SequencerDeps, willEnvelope } from './sequencer.ts';
export {
  createSystemMetrics,
  type SystemInfoSource,
  type SystemMetricsDeps,
  type SystemMetricsReader,
} from './system-metrics.ts';
export { createTelemetry, type Telemetry, type TelemetryDeps, type TelemetryStats } from './telemetry.ts';
export { readTrustedKeyFiles, type TrustedKeyFile } from './trusted-key-files.ts';
export { AGENT_VERSION } from './version.ts';
