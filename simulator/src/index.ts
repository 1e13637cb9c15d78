export { parseSimArgs, type SimCliOptions, type SimModelOptions, startSummary } from './cli.ts';
export {
  AckTracker,
  createFleet,
  Fleet,
  type FleetOptions,
  type FleetStats,
  fetchModelRef,
  formatStats,
} from './fleet.ts';
export * from './model-behaviour.ts';
export { NetworkFaults } from './net-fault.ts';
export * from './profiles.ts';
export * from './scenario.ts';
export { type ServedModel, SimulatedModelRuntime, type SimulatedPipeline } from './sim-runtime.ts';
export * from './synthetic-metrics.ts';
export type { SimulatedModels } from './virtual-device.ts';
export { type AckObserver, type DeviceCondition, VirtualDevice, type VirtualDeviceOptions } from './virtual-device.ts';
