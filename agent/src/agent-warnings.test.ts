import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair } from '@edgeloop/firmware-images';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Agent, createAgent } from './agent.ts';
import { loadConfig } from './config.ts';
import { createRecordingLogger } from './logger.ts';

/* What an operator reads in the agent's log at start about its model trust store. */

let dir: string;
const agents: Agent[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-agent-warn-'));
});
afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.stop({ graceful: false });
  rmSync(dir, { recursive: true, force: true });
});

async function startedWith(models: Record<string, unknown>) {
  const loaded = loadConfig({
    fileText: JSON.stringify({
      deviceId: 'cam-warn-01',
      // Nothing listens there: the link keeps retrying in the background, which is all we need.
      mqtt: { url: 'mqtt://127.0.0.1:9', password: 'secret', reconnect: { initialMs: 1000, maxMs: 1000 } },
      dataDir: dir,
      outbox: { fsync: 'never' },
      models,
    }),
    filePath: path.join(dir, 'agent.json'),
    env: {},
  });
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.error.problems));
  const logger = createRecordingLogger();
  const agent = createAgent({
    config: loaded.value,
    logger,
    readSystem: async () => ({
      cpu: { loadPct: 1, cores: 1 },
      memory: { usedBytes: 1, totalBytes: 2 },
      disk: { usedBytes: 1, totalBytes: 2 },
      temperatures: { cpuC: null, gpuC: null, zones: {} },
      uptimeS: 1,
    }),
  });
  agents.push(agent);
  await agent.start();
  return logger.lines.filter((line) => line.level === 'warn');
}

describe('agent start', () => {
  it('warns that every model release will be refused when models.trustedKeys is empty', async () => {
    const warnings = await startedWith({});
    expect(warnings).toContainEqual(
      expect.objectContaining({
        msg: 'no trusted keys configured (models.trustedKeys): every model release will be refused',
        fields: expect.objectContaining({ deviceId: 'cam-warn-01', setting: 'models.trustedKeys' }),
      }),
    );
  });

  it('says nothing about trusted keys when a key file is configured', async () => {
    writeFileSync(path.join(dir, 'release.pub'), generateKeyPair().publicKeyPem);
    const warnings = await startedWith({ trustedKeys: ['release.pub'] });
    expect(warnings.map((line) => line.msg).join('\n')).not.toMatch(/trusted keys/);
  });
});
