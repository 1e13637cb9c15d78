import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/* `edgeloop models ...` and `edgeloop rollouts ...` against a running control plane. */

let kit: SigningKit;
let t: TestControlPlane;

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath });
});
afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

async function cli(...argv: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(
    argv,
    { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
    {
      out: (text) => out.push(text),
      err: (text) => err.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
    },
  );
  return { code, out: out.join(''), err: err.join('') };
}

describe('edgeloop models and rollouts', () => {
  it('uploads a signed release from files, lists it, and runs a rollout through its life', async () => {
    const bytes = kit.modelBytes(50_000);
    const signed = await kit.sign(bytes, { name: 'det', version: '2.0.0', adapter: 'yolo' });
    const releasePath = join(kit.dir, 'det-2.0.0.release.json');
    const modelPath = join(kit.dir, 'det-2.0.0.onnx');
    writeFileSync(releasePath, JSON.stringify(signed));
    writeFileSync(modelPath, bytes);

    const uploaded = await cli('models', 'upload', '--release', releasePath, '--model', modelPath);
    expect(uploaded).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(uploaded.out)).toMatchObject({ id: 'det@2.0.0', sizeBytes: bytes.length });
    const listed = await cli('models', 'list');
    expect(listed.out).toMatch(/ID\s+SHA256[\s\S]*det@2\.0\.0/);
    expect(JSON.parse((await cli('models', 'get', 'det', '2.0.0')).out).signed).toEqual(signed);
    expect((await cli('models', 'upload', '--release', releasePath)).code).toBe(2);

    for (const id of ['cli-a', 'cli-b', 'cli-c', 'cli-d']) await t.enroll(id, { fleet: 'cli' });
    const dry = await cli(
      'rollouts',
      'create',
      '--model',
      'det@2.0.0',
      '--selector',
      'fleet=cli',
      '--dry-run',
      '--json',
    );
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.out)).toMatchObject({ dryRun: true, targetDevices: 4 });
    const dryText = await cli('rollouts', 'create', '--model', 'det@2.0.0', '--selector', 'fleet=cli', '--dry-run');
    expect(dryText.out).toMatch(/dry run for det@2\.0\.0: 4 target devices/);
    expect(dryText.out).toMatch(/STAGE\s+KIND\s+DEVICES[\s\S]*shadow/);
    expect(dryText.out).toMatch(/no warnings|warnings \(\d+\):/);
    const created = await cli('rollouts', 'create', '--model', 'det@2.0.0', '--selector', 'fleet=cli', '--json');
    expect(created.code).toBe(0);
    const id = JSON.parse(created.out).id as string;
    const paused = await cli('rollouts', 'pause', id, '--reason', 'lunch');
    expect(paused.out).toMatch(new RegExp(`${id}\\s+det@2\\.0\\.0\\s+paused\\s+shadow`));
    expect((await cli('rollouts', 'list')).out).toContain(id);
    expect(
      JSON.parse((await cli('rollouts', 'events', id, '--json')).out).items.map((e: { type: string }) => e.type),
    ).toEqual(expect.arrayContaining(['created', 'paused']));
    expect((await cli('rollouts', 'abort', id)).out).toMatch(/aborted/);
    const again = await cli('rollouts', 'resume', id);
    expect(again.code).toBe(1);
    expect(again.err).toContain('409');
  });
});
