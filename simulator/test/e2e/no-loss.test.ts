import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readOutboxDir } from '@edgeloop/agent';
import { createApiClient, unwrap } from '@edgeloop/protocol';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { eventually, freePort, spawnControlPlane } from '../support.ts';

/*
 * Acceptance: no loss, no duplicates. Real agent processes keep publishing while the control
 * plane (and with it the embedded broker) is SIGKILLed and restarted, then stopped and restarted
 * cleanly, and while one agent is SIGKILLed and restarted. Afterwards every message each agent
 * sequenced is in the database exactly once: per boot, seq 1..max without a gap, every msgId
 * once, and every message the killed agent had left in its outbox delivered by its next boot.
 */

const root = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../..');
const AGENT_BIN = join(root, 'agent/bin/edgeloop-agent.js');

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((done) => child.once('exit', (code) => done(code)));
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

describe('no loss and no duplicates across broker restarts and agent SIGKILL', () => {
  const work = mkdtempSync(join(tmpdir(), 'edgeloop-noloss-'));
  const token = `noloss-${randomBytes(12).toString('hex')}`;
  const children = new Set<ChildProcess>();
  let httpPort = 0;
  let mqttPort = 0;
  let cp: ChildProcess | null = null;
  /** The typed client of the control plane on httpPort (the same port across its restarts). */
  const client = () => createApiClient({ baseUrl: `http://127.0.0.1:${httpPort}`, token });

  const startControlPlane = async () => {
    const started = await spawnControlPlane({ httpPort, mqttPort, dataDir: join(work, 'cp'), token });
    children.add(started.child);
    cp = started.child;
  };

  const startAgent = (configFile: string) => {
    const child = spawn(process.execPath, [AGENT_BIN, '--config', configFile], {
      env: { ...process.env, EDGELOOP_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    children.add(child);
    return child;
  };

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await Promise.all([...children].map(exited));
    rmSync(work, { recursive: true, force: true });
  });

  it('stores every sequenced message exactly once', async () => {
    httpPort = await freePort();
    mqttPort = await freePort();
    await startControlPlane();

    const ids = ['noloss-a', 'noloss-b', 'noloss-c'];
    const configs: string[] = [];
    for (const id of ids) {
      const enrolled = await unwrap(client().devices.enroll({ id, labels: { test: 'no-loss' } }));
      const dataDir = join(work, id);
      mkdirSync(dataDir, { recursive: true });
      const file = join(dataDir, 'agent.json');
      writeFileSync(
        file,
        JSON.stringify({
          deviceId: id,
          mqtt: {
            url: `mqtt://127.0.0.1:${mqttPort}`,
            password: enrolled.credentials.password,
            keepaliveS: 5,
            reconnect: { initialMs: 100, maxMs: 500, jitter: 0.2 },
          },
          dataDir,
          telemetry: { intervalS: 0.1 },
          logLevel: 'warn',
        }),
      );
      configs.push(file);
    }
    const agents = configs.map((file) => startAgent(file));
    const online = async () => (await unwrap(client().fleet.summary())).online;
    await eventually(async () => (await online()) === 3, 30_000, 'three agents online');
    await sleep(1500);

    // 1. The control plane dies hard while agents publish; acked messages must already be stored.
    cp?.kill('SIGKILL');
    await exited(cp as unknown as ChildProcess);
    await sleep(1000);

    // 2. While it is down, one agent dies hard with a backlog in its outbox: all of it must
    //    arrive from its next boot.
    const victim = agents[0] as ChildProcess;
    victim.kill('SIGKILL');
    await exited(victim);
    const left = readOutboxDir(join(work, ids[0] as string, 'outbox'));
    const leftIds = left.entries.map((entry) => entry.msgId);
    expect(leftIds.length).toBeGreaterThan(0);
    agents[0] = startAgent(configs[0] as string);
    await sleep(1000);
    await startControlPlane();
    await sleep(2000);

    // 3. A clean restart of the control plane while agents keep publishing.
    cp?.kill('SIGTERM');
    expect(await exited(cp as unknown as ChildProcess)).toBe(0);
    await sleep(800);
    await startControlPlane();
    await sleep(2500);

    // Stop agents cleanly: they drain their outboxes before they go.
    for (const agent of agents) agent.kill('SIGTERM');
    const codes = await Promise.all(agents.map(exited));
    expect(codes).toEqual([0, 0, 0]);
    cp?.kill('SIGTERM');
    expect(await exited(cp as unknown as ChildProcess)).toBe(0);

    const db = new Database(join(work, 'cp', 'edgeloop.db'), { readonly: true, fileMustExist: true });
    try {
      const duplicates = db
        .prepare('SELECT device_id, msg_id, COUNT(*) AS n FROM messages GROUP BY device_id, msg_id HAVING n > 1')
        .all();
      expect(duplicates).toEqual([]);
      let total = 0;
      for (const id of ids) {
        const rows = db
          .prepare('SELECT boot_id AS bootId, seq, msg_id AS msgId FROM messages WHERE device_id = ? AND seq > 0')
          .all(id) as { bootId: string; seq: number; msgId: string }[];
        const byBoot = new Map<string, number[]>();
        for (const row of rows) byBoot.set(row.bootId, [...(byBoot.get(row.bootId) ?? []), row.seq]);
        expect(byBoot.size).toBe(id === ids[0] ? 2 : 1);
        for (const [bootId, seqs] of byBoot) {
          const sorted = seqs.sort((a, b) => a - b);
          const max = sorted.at(-1) ?? 0;
          // 1..max, each once: no gap, no duplicate.
          expect(sorted, `device ${id} boot ${bootId}`).toEqual(Array.from({ length: max }, (_, i) => i + 1));
          total += sorted.length;
        }
        if (id === ids[0]) {
          const stored = new Set(rows.map((row) => row.msgId));
          expect(leftIds.filter((msgId) => !stored.has(msgId))).toEqual([]);
        }
      }
      expect(total).toBeGreaterThan(100);
      console.info(
        `no-loss: ${total} messages from 3 agents (4 boots) stored exactly once; ${leftIds.length} recovered from the killed agent's outbox`,
      );
    } finally {
      db.close();
    }
  }, 120_000);
});
