import v8 from 'node:v8';
import type { ModelRef } from '@edgeloop/protocol';
import { parseSimArgs, startSummary, USAGE } from './cli.ts';
import { createFleet, type FleetOptions, fetchModelRef } from './fleet.ts';

// Composition root of edgeloop-sim: the only reader of process.env and argv.

// Thousands of devices in one process: V8 optimises for size, so the heap it grows to in the
// enrolment and connect storms goes back after them (bench/sim-fleet.ts sets the same; see there).
v8.setFlagsFromString('--optimize-for-size');
const parsed = parseSimArgs(process.argv.slice(2), process.env);
if (!parsed.ok) {
  if (parsed.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  for (const problem of parsed.problems) process.stderr.write(`edgeloop-sim: ${problem}\n`);
  process.stderr.write('Run edgeloop-sim --help for usage.\n');
  process.exit(2);
}
const options = parsed.value;
let models: FleetOptions['models'];
if (options.models) {
  let local: ModelRef | null = null;
  if (options.models.initialModel) {
    const found = await fetchModelRef(options.fleet, options.models.initialModel);
    if (!found.ok) {
      process.stderr.write(`edgeloop-sim: --initial-model: ${found.error.message}\n`);
      process.exit(found.error.code === 'unknown_model' ? 2 : 1);
    }
    local = found.value;
  }
  models = { trustedKeyPems: options.models.trustedKeyPems, local, healthCheckMs: options.models.healthCheckMs };
  process.stderr.write(
    `edgeloop-sim: model updates on: ${options.models.trustedKeyPems.length} trusted key(s), ` +
      `devices start on ${local ? `${local.id} (${local.sha256.slice(0, 12)})` : 'no model'}\n`,
  );
}
if (!models) {
  process.stderr.write(
    'edgeloop-sim: no --trusted-keys: devices run no model manager and never install an assigned model\n',
  );
}
const fleet = createFleet({ ...options.fleet, ...(models ? { models } : {}) });
for (const [key, behaviour] of Object.entries(options.behaviours)) fleet.setModelBehaviour(key, behaviour);
const controller = new AbortController();
let stopping = false;
async function shutdown(code: number): Promise<void> {
  if (stopping) return;
  stopping = true;
  controller.abort();
  stopSummary?.();
  process.stderr.write('edgeloop-sim: stopping devices...\n');
  await fleet.stop();
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));

let stopSummary: (() => void) | undefined;
try {
  process.stderr.write(
    `edgeloop-sim: enrolling ${options.fleet.devices} devices at ${options.fleet.controlPlaneUrl}\n`,
  );
  await fleet.enroll();
  process.stderr.write(`edgeloop-sim: starting ${options.fleet.devices} devices\n`);
  if (!options.quiet) stopSummary = startSummary(fleet, process.stderr);
  await fleet.start(controller.signal);
  if (options.scenario) {
    const scenario = options.scenario;
    void fleet.runScenario(scenario, controller.signal, (step, count) => {
      process.stderr.write(`\nedgeloop-sim: ${scenario.name}: ${step.action} on ${count} devices\n`);
    });
  }
  if (options.durationMs !== null) setTimeout(() => void shutdown(0), options.durationMs);
} catch (error) {
  process.stderr.write(`edgeloop-sim: ${(error as Error).message}\n`);
  await shutdown(1);
}
