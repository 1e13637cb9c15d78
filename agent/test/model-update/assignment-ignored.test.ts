import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair, trustedKeyFromPem } from '@edgeloop/firmware-images';
import { type ModelRef, Reported, type SignedModelRelease } from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  createModelManager,
  type ModelManager,
  type ModelManagerEvent,
  type ReportedModel,
} from '../../src/model-update/manager.ts';
import { createMemoryModelStorage, type ModelStorage } from '../../src/model-update/storage.ts';
import { type ModelServer, startModelServer } from '../support/model-server.ts';
import { PlayedRuntime } from '../support/played-runtime.ts';
import { assignmentOf, registryPath, signedBytes } from '../support/releases.ts';

/*
 * Expired and replayed model assignments (issue 12 §3) on the model manager, with real signed
 * releases and a real HTTP model server: nothing downloads or switches, Reported.model.ignored
 * says why, and one model.assignment-ignored event is emitted per assignment, not per redelivery
 * or restart.
 */

const keys = generateKeyPair();
const trusted = trustedKeyFromPem(keys.publicKeyPem);
if (!trusted.ok) throw new Error('key');
const credentials = { username: 'cam-ttl-01', password: 'ttl-secret' };
const LOCAL: ModelRef = { id: 'local@0.1.0', name: 'local', version: '0.1.0', sha256: 'f'.repeat(64) };

let server: ModelServer;
let dir: string;
let now = Date.now();
const clock = { now: () => now };

async function release(version: string, counter: number): Promise<SignedModelRelease> {
  const bytes = randomBytes(20_000);
  const made = await signedBytes(dir, bytes, { keys, manifest: { name: 'det', version, adapter: 'yolo' }, counter });
  server.serve(registryPath(made.signed), bytes);
  return made.signed;
}

beforeAll(async () => {
  server = await startModelServer({ credentials });
});
afterAll(() => server.close());

const managers: ModelManager[] = [];

function harness(storage: ModelStorage = createMemoryModelStorage()) {
  const events: ModelManagerEvent[] = [];
  const reports: ReportedModel[] = [];
  const runtime = new PlayedRuntime({ local: LOCAL });
  runtime.startLocal();
  const manager = createModelManager({
    runtime,
    storage,
    trustedKeys: [trusted.ok ? trusted.value : (undefined as never)],
    hardwareProfile: 'x86-gpu',
    controlPlaneUrl: server.url,
    credentials,
    emit: (event) => events.push(event),
    onChange: () => reports.push(manager.report()),
    options: { download: { initialDelayMs: 5, maxDelayMs: 20, maxAttempts: 5 } },
    clock,
  });
  managers.push(manager);
  const ignoredEvents = () => events.filter((event) => event.type === 'model.assignment-ignored');
  return { manager, runtime, storage, events, reports, ignoredEvents };
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-ttl-'));
  server.requests.length = 0;
  now = Date.now();
});
afterEach(async () => {
  for (const manager of managers.splice(0)) await manager.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('ignored model assignments', () => {
  it('ignores an expired assignment: no download, no switch, reported and announced once across redeliveries and a restart', async () => {
    const storage = createMemoryModelStorage();
    const h = harness(storage);
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const stale = assignmentOf(v1, { rolloutId: 'r1', expiresAt: now - 60_000 });
    await h.manager.apply(stale);
    await h.manager.idle();
    expect(server.requests).toHaveLength(0);
    expect(h.runtime.active()?.sha256).toBe(LOCAL.sha256);
    expect(h.manager.record()).toBeNull();
    const report = h.manager.report();
    expect(report.ignored).toEqual({ reason: 'assignment-expired', rolloutId: 'r1', target: stale.model, at: now });
    // The report is a valid Reported.model.
    expect(Reported.shape.model.safeParse(report).success).toBe(true);
    expect(h.ignoredEvents()).toHaveLength(1);
    expect(h.ignoredEvents()[0]).toMatchObject({
      severity: 'warning',
      rolloutId: 'r1',
      data: { reason: 'assignment-expired', expiresAt: stale.expiresAt },
    });

    // The same retained message again, then a restart that re-applies the persisted desired state.
    await h.manager.apply(stale);
    await h.manager.stop();
    const again = harness(storage);
    await again.manager.start();
    await again.manager.apply(stale);
    await again.manager.idle();
    expect(h.ignoredEvents()).toHaveLength(1);
    expect(again.ignoredEvents()).toHaveLength(0);
    expect(again.manager.report().ignored?.reason).toBe('assignment-expired');
    expect(server.requests).toHaveLength(0);

    // The control plane's renewal of the same assignment is acted on, and clears the report.
    await again.manager.apply({ ...stale, expiresAt: now + 3_600_000 });
    await again.manager.idle();
    expect(again.manager.record()?.state).toBe('committed');
    expect(again.runtime.active()?.sha256).toBe(v1.release.sha256);
    expect(again.manager.report().ignored).toBeUndefined();
  });

  it('ignores the replay of a rollout assignment that already ended here, keeping the model that runs', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    const first = assignmentOf(v1, { rolloutId: 'r1' });
    await h.manager.apply(first);
    await h.manager.idle();
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.runtime.active()?.sha256).toBe(v2.release.sha256);
    const downloads = server.requests.length;

    await h.manager.apply(first);
    await h.manager.idle();
    expect(server.requests).toHaveLength(downloads);
    expect(h.runtime.active()?.sha256).toBe(v2.release.sha256);
    expect(h.manager.record()?.rolloutId).toBe('r2');
    expect(h.manager.report().ignored).toMatchObject({ reason: 'assignment-replayed', rolloutId: 'r1' });
    expect(h.ignoredEvents()).toHaveLength(1);
  });

  it('treats a renewed copy of the update that ended as the same assignment: no event, no restart', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const assigned = assignmentOf(v1, { rolloutId: 'r1', expiresAt: now + 1_000 });
    await h.manager.apply(assigned);
    await h.manager.idle();
    const updates = h.events.length;
    // Later, the old copy has lapsed and the renewed one arrives: both are the finished update.
    now += 10_000;
    await h.manager.apply(assigned);
    await h.manager.apply({ ...assigned, expiresAt: now + 3_600_000 });
    await h.manager.idle();
    expect(h.events).toHaveLength(updates);
    expect(h.manager.report().ignored).toBeUndefined();
    expect(h.manager.record()?.state).toBe('committed');
  });
});
