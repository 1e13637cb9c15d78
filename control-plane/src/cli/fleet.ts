import { type FleetSummary, unwrap } from '@edgeloop/protocol';
import { type CommandSpec, EXIT } from './command.ts';
import { json, num, pairs, table } from './output.ts';

/** The fleet summary as a few aligned lines. */
export function formatFleet(summary: FleetSummary): string {
  const p = summary.pipeline;
  const rows: [string, string][] = [
    ['devices', `${summary.total} (online ${summary.online}, offline ${summary.offline}, unknown ${summary.unknown})`],
    ['health', `healthy ${summary.healthy}, degraded ${summary.degraded}`],
    ['health reasons', pairs(summary.byHealthReason)],
    ['reporting pipelines', String(p.devicesReporting)],
    ['fps (sum)', num(p.fps)],
    ['frames', `in ${p.framesIn}, processed ${p.framesProcessed}, dropped ${p.framesDropped}`],
    ['inference errors', String(p.inferenceErrors)],
    ['inference p95 ms', `median ${num(p.inferenceP95Ms.median)}, max ${num(p.inferenceP95Ms.max)}`],
    [
      'detections /1000 frames',
      pairs(Object.fromEntries(Object.entries(p.detectionsPer1000).map(([k, v]) => [k, num(v)]))),
    ],
    ['providers', pairs(p.providers)],
    ['models', pairs(p.models)],
    [
      'camera faults',
      `black ${p.cameraFaults.black}, frozen ${p.cameraFaults.frozen}, blurred ${p.cameraFaults.blurred}`,
    ],
  ];
  return table(['FLEET', ''], rows);
}

export const fleetCommand: CommandSpec = {
  words: ['fleet'],
  summary: 'Show the fleet summary: devices by status and health, and the online pipelines',
  examples: ['edgeloop fleet', 'edgeloop fleet --json | jq .pipeline.fps'],
  async run({ client, io, json: asJson }) {
    const summary = await unwrap(client().fleet.summary());
    io.out(asJson ? json(summary) : `${formatFleet(summary)}\n`);
    return EXIT.ok;
  },
};
