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
export { type LogFn, type Logger, silentLogger } from './logger.ts';
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
export { createBootId, createSequencer, type Sequencer, type SequencerDeps, willEnvelope } from './sequencer.ts';
export {
  createSystemMetrics,
  type SystemInfoSource,
  type SystemMetricsDeps,
  type SystemMetricsReader,
} from './system-metrics.ts';
export { createTelemetry, type Telemetry, type TelemetryDeps, type TelemetryStats } from './telemetry.ts';
export { AGENT_VERSION } from './version.ts';
