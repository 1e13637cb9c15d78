import { DRIFT_BANDS, type DriftState, type SetDriftReferenceRequest, unwrap } from '@edgeloop/protocol';
import { UsageError } from './args.ts';
import { type CommandSpec, EXIT, type GroupSpec } from './command.ts';
import { isoTime, json, num, table } from './output.ts';
import { parseTime } from './samples.ts';

/* `edgeloop drift`: the drift states of sites and devices, and setting a reference. */

const share = (value: number | null) => (value === null ? '-' : value.toFixed(2));

/** The near-threshold share, reference then now; a bare dash when neither is known yet. */
export function nearShares(reference: number | null, current: number | null): string {
  return reference === null && current === null ? '-' : `${share(reference)} -> ${share(current)}`;
}

export function formatDrift(items: readonly DriftState[]): string {
  return table(
    ['SCOPE', 'KEY', 'MODEL', 'BAND', 'WINDOWS', 'SINCE', 'CONF PSI', 'MIX PSI', 'NEAR REF->NOW', 'REFERENCE'],
    items.map((s) => [
      s.scope,
      s.key,
      s.modelId ?? s.modelSha256.slice(0, 12),
      s.band,
      String(s.sustainedWindows),
      s.since === null ? '-' : isoTime(s.since),
      num(s.numbers.confidencePsi),
      num(s.numbers.classMixPsi),
      nearShares(s.numbers.nearThresholdShare.reference, s.numbers.nearThresholdShare.current),
      s.reference.complete
        ? `${s.reference.source}${s.reference.datasetId ? ` ${s.reference.datasetId}` : ''} (${s.reference.frames} frames)`
        : `${s.reference.source} filling until ${isoTime(s.reference.to)}`,
    ]),
  );
}

const list: CommandSpec = {
  words: ['drift', 'list'],
  summary: 'Drift states of sites and devices per model, worst band first (also: edgeloop drift [flags])',
  description:
    'Each row is one model at one site or on one device: its band (stable, moderate, major) from the last\n' +
    'closed window against its reference, how many windows in a row it has held, and the numbers behind it.',
  flags: [
    { name: 'site', value: 'S', help: 'only this site (and its devices)' },
    { name: 'device', value: 'D', help: 'only this device' },
    { name: 'band', value: 'B', help: 'only states at this band', choices: DRIFT_BANDS },
    { name: 'model', value: 'M', help: 'only this model: name, name@version or sha256' },
    { name: 'scope', value: 'SCOPE', help: 'only sites or only devices', choices: ['site', 'device'] },
  ],
  examples: ['edgeloop drift', 'edgeloop drift --site b --band major', 'edgeloop drift list --device cam-7 --json'],
  async run({ client, flag, io, json: asJson }) {
    const query: Record<string, string> = {};
    for (const name of ['site', 'device', 'band', 'model', 'scope']) {
      const value = flag(name);
      if (value !== undefined) query[name] = value;
    }
    const listed = await unwrap(client().drift.list(query));
    io.out(asJson ? json(listed.items) : `${formatDrift(listed.items)}\n`);
    return EXIT.ok;
  },
};

const reference: CommandSpec = {
  words: ['drift', 'reference'],
  summary: 'Set the drift reference of a site or device for one model: auto, a dataset version, or a time range',
  description:
    'auto restarts the default reference (the first --drift-reference-s of telemetry from now on);\n' +
    '--dataset uses the predictions of a dataset version; --from/--to pins a range of stored telemetry.\n' +
    'The state starts again from stable. The change is in the audit log.',
  flags: [
    { name: 'site', value: 'S', help: 'the site (give --site or --device)' },
    { name: 'device', value: 'D', help: 'the device' },
    { name: 'model', value: 'SHA256', help: 'sha256 of the model (see edgeloop drift --json or models list)' },
    { name: 'auto', help: 'restart the default reference' },
    { name: 'dataset', value: 'NAME@N', help: 'a dataset version whose predictions form the reference' },
    { name: 'from', value: 'TIME', help: 'start of a pinned range (ISO 8601 or epoch ms)' },
    { name: 'to', value: 'TIME', help: 'end of a pinned range (ISO 8601 or epoch ms)' },
  ],
  examples: [
    'edgeloop drift reference --site b --model 3f2a... --auto',
    'edgeloop drift reference --site b --model 3f2a... --dataset hard@3',
    'edgeloop drift reference --device cam-7 --model 3f2a... --from 2026-05-01T00:00:00Z --to 2026-05-02T00:00:00Z',
  ],
  async run({ args, client, flag, io, json: asJson }) {
    const site = flag('site');
    const device = flag('device');
    const model = flag('model');
    if ((site === undefined) === (device === undefined)) {
      throw new UsageError('edgeloop drift reference needs --site S or --device D (one of them)');
    }
    if (!model) throw new UsageError('edgeloop drift reference needs --model SHA256');
    const dataset = flag('dataset');
    const from = flag('from');
    const to = flag('to');
    const auto = args.booleans.has('auto');
    const sources = [auto, dataset !== undefined, from !== undefined || to !== undefined].filter(Boolean).length;
    if (sources !== 1)
      throw new UsageError('edgeloop drift reference needs one of --auto, --dataset, or --from and --to');
    const target =
      site !== undefined ? { scope: 'site' as const, key: site } : { scope: 'device' as const, key: device! };
    let body: SetDriftReferenceRequest;
    if (auto) body = { ...target, modelSha256: model, source: 'auto' };
    else if (dataset !== undefined) body = { ...target, modelSha256: model, source: 'dataset', datasetId: dataset };
    else {
      if (from === undefined || to === undefined) throw new UsageError('a pinned reference needs both --from and --to');
      body = {
        ...target,
        modelSha256: model,
        source: 'pinned',
        from: parseTime(from, 'from'),
        to: parseTime(to, 'to'),
      };
    }
    const state = await unwrap(client().drift.setReference(body));
    io.out(asJson ? json(state) : `${formatDrift([state])}\n`);
    return EXIT.ok;
  },
};

export const driftGroup: GroupSpec = {
  name: 'drift',
  summary: 'Drift of model outputs per site and device, and its references',
  commands: [list, reference],
  defaultCommand: 'list',
  examples: ['edgeloop drift', 'edgeloop drift --band major', 'edgeloop drift reference --site b --model SHA --auto'],
};
