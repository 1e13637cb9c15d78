import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const bin = path.join(import.meta.dirname, '..', 'bin', 'edgeloop-image.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-image-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `node bin/edgeloop-image.js ...args` and returns its exit code and output. */
async function image(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [bin, ...args], { cwd: dir });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('edgeloop-image as a child process', () => {
  it('runs keygen, sign and verify end to end, and refuses tampered bytes', async () => {
    const keygen = await image('keygen', '--out', 'keys', '--name', 'ops-2026');
    expect(keygen.code).toBe(0);
    const keyId = keygen.stdout.trim();
    expect(keyId).toMatch(/^[0-9a-f]{16}$/);
    expect(statSync(path.join(dir, 'keys', 'ops-2026.key')).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dir, 'keys', 'ops-2026.pub'), 'utf8')).toMatch(/^-----BEGIN PUBLIC KEY-----/);

    writeFileSync(path.join(dir, 'model.onnx'), Buffer.alloc(256 * 1024, 7));
    writeFileSync(
      path.join(dir, 'manifest.json'),
      JSON.stringify({ name: 'people', version: '3.0.0', adapter: 'yolo', compatibleHardware: ['rpi5', 'orin-nano'] }),
    );
    const sign = await image(
      'sign',
      '--key',
      'keys/ops-2026.key',
      '--model',
      'model.onnx',
      '--manifest',
      'manifest.json',
      '--counter',
      '12',
      '--expires-in',
      '30d',
      '--hardware',
      'orin-nano,rpi5',
      '--out',
      'release.json',
    );
    expect(sign.stderr).toBe('');
    expect(sign.code).toBe(0);
    const written = JSON.parse(readFileSync(path.join(dir, 'release.json'), 'utf8'));
    expect(written.release).toMatchObject({ keyId, releaseCounter: 12, hardware: ['orin-nano', 'rpi5'] });

    const verifyArgs = ['verify', '--release', 'release.json', '--trust', 'keys/ops-2026.pub', '--model', 'model.onnx'];
    const ok = await image(...verifyArgs, '--hardware', 'rpi5', '--min-counter', '11');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(new RegExp(`^ok people@3\\.0\\.0 counter 12 key ${keyId} expires `));

    writeFileSync(path.join(dir, 'model.onnx'), Buffer.alloc(256 * 1024, 8));
    const tampered = await image(...verifyArgs);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr.trim().split('\n')).toHaveLength(1);
    expect(tampered.stderr).toMatch(/^hash_mismatch: file sha256 [0-9a-f]{64} differs from the release's/);
  });

  it('refuses a release signed by a key that is not trusted, and never overwrites a key', async () => {
    expect((await image('keygen', '--out', 'other')).code).toBe(0);
    const again = await image('keygen', '--out', 'other');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^file_error: .*release\.key exists/);
    writeFileSync(path.join(dir, 'm2.onnx'), 'bytes');
    writeFileSync(path.join(dir, 'm2.json'), JSON.stringify({ name: 'm2', version: '1.0.0', adapter: 'yolo' }));
    const signed = await image(
      ...['sign', '--key', 'other/release.key', '--model', 'm2.onnx', '--manifest', 'm2.json'],
      ...['--counter', '1', '--out', 'm2-release.json'],
    );
    expect(signed.code).toBe(0);
    expect((await image('keygen', '--out', 'third')).code).toBe(0);
    const refused = await image('verify', '--release', 'm2-release.json', '--trust', 'third/release.pub');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^unknown_key: key [0-9a-f]{16} is not a trusted key/);
    const rotated = await image(
      'verify',
      '--release',
      'm2-release.json',
      '--trust',
      'third/release.pub,other/release.pub',
    );
    expect(rotated.code).toBe(0);
  });

  it('signs the lineage flags into the release; verify refuses the file once its lineage is edited', async () => {
    expect((await image('keygen', '--out', 'lineage-keys')).code).toBe(0);
    writeFileSync(path.join(dir, 'retrained.onnx'), Buffer.alloc(4096, 3));
    writeFileSync(path.join(dir, 'retrained.json'), JSON.stringify({ name: 'det', version: '2.0.0', adapter: 'yolo' }));
    const parent = 'AB'.repeat(32);
    const sign = await image(
      ...['sign', '--key', 'lineage-keys/release.key', '--model', 'retrained.onnx', '--manifest', 'retrained.json'],
      ...['--counter', '2', '--out', 'retrained-release.json', '--dataset-version', 'hard-b@3'],
      ...['--parent-model', parent, '--run-id', 'run_7f3a', '--trainer', 'ultralytics 8.3 (gpu-07)'],
    );
    expect(sign.stderr).toBe('');
    expect(sign.code).toBe(0);
    expect(sign.stdout).toContain('lineage datasetVersion="hard-b@3"');
    const file = path.join(dir, 'retrained-release.json');
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written.release.lineage).toEqual({
      datasetVersion: 'hard-b@3',
      parentModel: parent.toLowerCase(),
      runId: 'run_7f3a',
      trainer: 'ultralytics 8.3 (gpu-07)',
    });
    const verifyArgs = ['verify', '--release', 'retrained-release.json', '--trust', 'lineage-keys/release.pub'];
    expect((await image(...verifyArgs, '--model', 'retrained.onnx')).code).toBe(0);

    written.release.lineage.datasetVersion = 'hard-b@4';
    writeFileSync(file, JSON.stringify(written, null, 2));
    const tampered = await image(...verifyArgs);
    expect(tampered.code).toBe(1);
    expect(tampered.stderr).toMatch(/^bad_signature: signature does not match the release/);
  });

  it('exits 2 naming the lineage flag whose value is badly formed', async () => {
    const result = await image(
      ...['sign', '--key', 'k', '--model', 'm', '--manifest', 'f', '--counter', '1', '--out', 'o'],
      ...['--parent-model', 'not-a-sha', '--dataset-version', 'hard-b'],
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^usage: .*--dataset-version hard-b: datasetVersion must be a dataset version id/);
    expect(result.stderr).toContain('--parent-model not-a-sha: sha256 must be 64 lowercase hex digits');
  });

  it('exits 2 on a bad flag', async () => {
    const result = await image('sign', '--keyfile', 'x');
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^usage: Unknown option '--keyfile'/);
  });
});
