import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createApiClient, Desired, topicFor, unwrap } from '@edgeloop/protocol';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/*
 * `edgeloop serve` as a real process, killed with SIGKILL in the middle of a rollout and started
 * again on the same data directory: the rollout is where it was, devices get their retained
 * desired state again, and the new process's engine carries on.
 */

const bin = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));
const adminToken = `restart-admin-${randomBytes(12).toString('hex')}`;

let kit: SigningKit;
let dataDir: string;
const children = new Set<ChildProcess>();

beforeAll(() => {
  kit = createSigningKit();
  dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-restart-'));
});
afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
  kit?.dispose();
});

async function serve(): Promise<{ child: ChildProcess; http: string; mqtt: string }> {
  const child = spawn(process.execPath, [bin, 'serve', '--http-port', '0', '--mqtt-port', '0'], {
    env: {
      ...process.env,
      EDGELOOP_DATA_DIR: dataDir,
      EDGELOOP_HOST: '127.0.0.1',
      EDGELOOP_LOG_LEVEL: 'warn',
      EDGELOOP_ADMIN_TOKEN: adminToken,
      EDGELOOP_TRUSTED_KEYS: kit.publicKeyPath,
      EDGELOOP_ROLLOUTS_TICK_MS: '100',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let stdout = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (/MQTT\s+mqtt:\/\/\S+/.test(stdout)) resolve();
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code} before it was ready`)));
  });
  return {
    child,
    http: /HTTP\s+(http:\/\/\S+)/.exec(stdout)![1]!,
    mqtt: /MQTT\s+(mqtt:\/\/\S+)/.exec(stdout)![1]!,
  };
}

/** The typed client of a control-plane process. */
const clientOf = (base: string) => createApiClient({ baseUrl: base, token: adminToken });

describe('rollout across a SIGKILL of the control plane', () => {
  it('resumes the rollout where it was, republishes desired state, and the new engine carries on', async () => {
    const first = await serve();
    const bytes = kit.modelBytes(20_000);
    const signed = await kit.sign(bytes, { name: 'det', version: '2.0.0', adapter: 'yolo' });
    const firstClient = clientOf(first.http);
    await unwrap(firstClient.models.upload({ release: JSON.stringify(signed), model: new Blob([bytes]) }));
    const passwords = new Map<string, string>();
    for (let i = 0; i < 6; i++) {
      const id = `kill-cam-${i}`;
      const enrolled = await unwrap(firstClient.devices.enroll({ id, labels: { fleet: 'kill', site: `s${i % 2}` } }));
      passwords.set(id, enrolled.credentials.password);
    }
    const rollout = await unwrap(
      firstClient.rollouts.create({
        modelId: 'det@2.0.0',
        selector: { labels: { fleet: 'kill' } },
        stages: [
          { name: 'canary', kind: 'canary' },
          { name: 'all', kind: 'percent', percent: 100 },
        ],
        canary: { minSize: 2, maxSize: 2 },
        // Silent devices: the stage can never pass by itself.
        evidence: { soakS: 3600 },
        gates: { intervalS: 0.2 },
      }),
    );
    const get = (base: string) => unwrap(clientOf(base).rollouts.get(rollout.id));
    await eventually(async () => (await get(first.http)).counts.assigned === 2, 10_000);

    first.child.kill('SIGKILL');
    await new Promise((resolve) => first.child.once('exit', resolve));

    const second = await serve();
    const resumed = await get(second.http);
    expect(resumed).toMatchObject({ status: 'running', stageIndex: 0, stage: 'canary', counts: { assigned: 2 } });
    expect(resumed.cohorts.canary).toEqual(rollout.cohorts.canary);

    // A canary device connecting now gets its assignment, retained by the new broker.
    const canary = rollout.cohorts.canary[0]!;
    const client = await mqtt.connectAsync(second.mqtt, {
      clientId: canary,
      username: canary,
      password: passwords.get(canary)!,
      reconnectPeriod: 0,
    });
    try {
      const desired = new Promise<Desired>((resolve) =>
        client.on('message', (_topic, payload) => resolve(Desired.parse(JSON.parse(payload.toString())))),
      );
      await client.subscribeAsync(topicFor(canary, 'desired'), { qos: 1 });
      expect((await desired).model).toMatchObject({
        rolloutId: rollout.id,
        mode: 'active',
        model: { id: 'det@2.0.0' },
      });
    } finally {
      await client.endAsync();
    }

    // The new process's engine acts: promoted to the last stage, it hands the model to everyone.
    expect((await clientOf(second.http).rollouts.act(rollout.id, 'promote')).ok).toBe(true);
    await eventually(async () => (await get(second.http)).counts.assigned === 6, 10_000);
    second.child.kill('SIGTERM');
    expect(await new Promise((resolve) => second.child.once('exit', resolve))).toBe(0);
  });
});
