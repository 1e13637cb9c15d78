import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { afterAll, describe, expect, it } from 'vitest';
import { parseSimArgs } from './cli.ts';

const dir = mkdtempSync(join(tmpdir(), 'edgeloop-sim-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keys = generateKeyPair();
const pub = join(dir, 'release.pub');
writeFileSync(pub, keys.publicKeyPem);
const base = ['--control-plane', 'http://127.0.0.1:8080', '--token', 't'];

function problemsOf(argv: string[]): string[] {
  const parsed = parseSimArgs(argv, {});
  return parsed.ok ? [] : parsed.problems;
}

describe('edgeloop-sim arguments', () => {
  it('runs no model manager without --trusted-keys', () => {
    const parsed = parseSimArgs(base, {});
    expect(parsed.ok && parsed.value.models).toBeNull();
  });

  it('turns model updates on with --trusted-keys, an initial model, a behaviour file and labels', () => {
    const behaviour = join(dir, 'bad.json');
    writeFileSync(behaviour, JSON.stringify({ models: { 'det@2.0.0': { latencyFactor: 3 } } }));
    const scenario = join(dir, 'scenario.json');
    writeFileSync(
      scenario,
      JSON.stringify({ name: 's', models: { 'det@2.0.0': { crashOnLoad: true }, 'det@3.0.0': { errorRate: 0.5 } } }),
    );
    const parsed = parseSimArgs(
      [
        ...base,
        ...['--trusted-keys', pub, '--initial-model', 'det@1.0.0', '--model-behaviour', behaviour],
        ...['--scenario', scenario, '--label', 'fleet=sim', '--label', 'ring=a=b', '--seed', '7'],
        ...['--health-check', '0.5'],
      ],
      {},
    );
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.models).toEqual({
      trustedKeyPems: [keys.publicKeyPem],
      initialModel: 'det@1.0.0',
      healthCheckMs: 500,
    });
    // The file wins over the scenario for the same model; the scenario's others stay.
    expect(parsed.value.behaviours).toEqual({ 'det@2.0.0': { latencyFactor: 3 }, 'det@3.0.0': { errorRate: 0.5 } });
    expect(parsed.value.fleet.labels).toEqual({ fleet: 'sim', ring: 'a=b' });
    expect(parsed.value.fleet.seed).toBe(7);
  });

  it('takes frame rate and size from a scenario that captures samples, and asks for --samples-dir', () => {
    const scenario = join(dir, 'sampling.json');
    writeFileSync(scenario, JSON.stringify({ name: 'sampling', samples: { fps: 1, width: 96, height: 64 } }));
    const on = parseSimArgs([...base, '--scenario', scenario, '--samples-dir', join(dir, 'spool')], {});
    expect(on.ok && on.value.fleet.samples).toEqual({ dir: join(dir, 'spool'), fps: 1, width: 96, height: 64 });
    const faster = parseSimArgs([...base, '--scenario', scenario, '--samples-dir', dir, '--sample-fps', '4'], {});
    expect(faster.ok && faster.value.fleet.samples?.fps).toBe(4);
    expect(problemsOf([...base, '--scenario', scenario])).toEqual([
      `--scenario ${scenario} captures hard samples: give --samples-dir DIR (each device's spool and budget)`,
    ]);
  });

  it('turns hard-sample capture on with --samples-dir, and refuses --sample-fps without it', () => {
    const off = parseSimArgs(base, {});
    expect(off.ok && off.value.fleet.samples).toBeUndefined();
    const on = parseSimArgs([...base, '--samples-dir', join(dir, 'samples'), '--sample-fps', '5'], {});
    expect(on.ok && on.value.fleet.samples).toEqual({ dir: join(dir, 'samples'), fps: 5 });
    expect(problemsOf([...base, '--sample-fps', '5'])).toEqual([
      '--sample-fps needs --samples-dir (without it devices capture no samples)',
    ]);
  });

  it('reads every .pub file of a --trusted-keys folder', () => {
    const folder = join(dir, 'keys');
    const other = generateKeyPair();
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.pub'), keys.publicKeyPem);
    writeFileSync(join(folder, 'b.pub'), other.publicKeyPem);
    const parsed = parseSimArgs([...base, '--trusted-keys', folder], {});
    expect(parsed.ok && parsed.value.models?.trustedKeyPems).toEqual([keys.publicKeyPem, other.publicKeyPem]);
  });

  it('lists every problem at once', () => {
    const privateKey = join(dir, 'release.key');
    writeFileSync(privateKey, keys.privateKeyPem);
    expect(
      problemsOf([...base, '--trusted-keys', privateKey, '--initial-model', 'det', '--label', 'nokey', '--seed', 'x']),
    ).toEqual([
      '--label must look like key=value, got "nokey"',
      '--seed must be an integer, got "x"',
      expect.stringMatching(/^--trusted-keys: .*private key/),
      '--initial-model must be name@version, got "det"',
    ]);
    expect(problemsOf([...base, '--initial-model', 'det@1.0.0', '--keepalive', '0'])).toEqual([
      '--initial-model needs --trusted-keys (without it devices run no model manager)',
      '--keepalive must be a positive number, got "0"',
    ]);
    const broken = join(dir, 'broken.json');
    writeFileSync(broken, JSON.stringify({ models: { 'det@2.0.0': { latencyFactor: 0 } } }));
    expect(problemsOf([...base, '--trusted-keys', pub, '--model-behaviour', broken])).toEqual([
      expect.stringMatching(/^--model-behaviour .*broken\.json: models\.det@2\.0\.0\.latencyFactor/),
    ]);
  });
});
