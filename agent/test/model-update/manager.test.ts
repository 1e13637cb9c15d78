import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { generateKeyPair, trustedKeyFromPem } from '@edgeloop/firmware-images';
import { type ModelRef, Reported, type SignedModelRelease } from '@edgeloop/protocol';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createRecordingLogger, type LogLine } from '../../src/logger.ts';
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
 * The model manager over the simulator's storage (memory) and a runtime that plays models, with
 * real signed releases and real HTTP downloads: the desired-state semantics, refusals,
 * cancellation, the anti-rollback rule, shadow promotion and the restart rules.
 */

const keys = generateKeyPair();
const trusted = trustedKeyFromPem(keys.publicKeyPem);
if (!trusted.ok) throw new Error('key');
const credentials = { username: 'cam-mgr-01', password: 'mgr-secret' };
const LOCAL: ModelRef = { id: 'local@0.1.0', name: 'local', version: '0.1.0', sha256: 'f'.repeat(64) };

let server: ModelServer;
let dir: string;
const versions = new Map<string, { bytes: Uint8Array; signed: SignedModelRelease }>();

async function release(version: string, counter: number, bytes: Uint8Array = randomBytes(30_000)) {
  const made = await signedBytes(dir, bytes, {
    keys,
    manifest: { name: 'det', version, adapter: 'yolo' },
    counter,
  });
  server.serve(registryPath(made.signed), bytes);
  versions.set(`${version}/${counter}`, { bytes, signed: made.signed });
  return made.signed;
}

beforeAll(async () => {
  server = await startModelServer({ credentials });
});
afterAll(() => server.close());

type Harness = {
  manager: ModelManager;
  runtime: PlayedRuntime;
  storage: ModelStorage;
  events: ModelManagerEvent[];
  reports: ReportedModel[];
  /** What the manager logged (info and above), as `level message`. */
  logs(): string[];
  lines: LogLine[];
  /** model.update states of one target, in order. */
  states(sha256: string): string[];
};

const managers: ModelManager[] = [];

function harness(
  storage: ModelStorage = createMemoryModelStorage(),
  runtime = new PlayedRuntime({ local: LOCAL }),
): Harness {
  const events: ModelManagerEvent[] = [];
  const reports: ReportedModel[] = [];
  const logger = createRecordingLogger();
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
    logger,
  });
  managers.push(manager);
  return {
    manager,
    runtime,
    storage,
    events,
    reports,
    lines: logger.lines,
    logs: () => logger.lines.filter((line) => line.level !== 'debug').map((line) => `${line.level} ${line.msg}`),
    states: (sha256) =>
      events
        .filter((e) => e.type === 'model.update' && (e.data.target as ModelRef | undefined)?.sha256 === sha256)
        .map((e) => String(e.data.state)),
  };
}

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-manager-'));
  server.requests.length = 0;
  server.throttle(64 * 1024, 0);
  for (const key of Object.keys(server.faults)) delete server.faults[key as keyof typeof server.faults];
});
afterEach(async () => {
  for (const manager of managers.splice(0)) await manager.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('model manager', () => {
  it('walks an assignment to committed, one event and one report per step', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    expect(h.states(v1.release.sha256)).toEqual([
      'notified',
      'downloading',
      'verifying',
      'loading',
      'warming',
      'active',
      'committed',
    ]);
    const committed = h.events.at(-1);
    expect(committed).toMatchObject({
      type: 'model.update',
      rolloutId: 'r1',
      data: { state: 'committed', from: 'active', code: null, target: { sha256: v1.release.sha256 } },
    });
    expect(server.requests).toHaveLength(1);
    expect(server.requests[0]?.authorization).toBe(
      `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
    );
    expect(h.runtime.active()?.sha256).toBe(v1.release.sha256);
    expect(h.runtime.log).toContain('release local@0.1.0');
    const report = h.manager.report();
    expect(report).toEqual({
      active: expect.objectContaining({ sha256: v1.release.sha256 }),
      previous: LOCAL,
      shadow: null,
      update: { rolloutId: 'r1', target: expect.objectContaining({ id: 'det@1.0.0' }), state: 'committed' },
      highestReleaseCounter: 1,
    });
    expect(() => Reported.shape.model.parse(report)).not.toThrow();
    expect(h.reports.map((r) => r.update?.state)).toContain('downloading');
    expect(h.storage.readTable()).toMatchObject({ active: 'a', highest: { det: { counter: 1 } } });
  });

  it('leaves models alone for an undefined model, and does nothing again for a finished update', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1));
    await h.manager.idle();
    const before = h.events.length;
    await h.manager.apply(undefined);
    await h.manager.apply(assignmentOf(v1));
    await h.manager.idle();
    expect(h.events.length).toBe(before);
    expect(server.requests).toHaveLength(1);
  });

  it('ends an assignment of the bytes already running at once as committed/already_active, switching nothing', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    const runtimeLog = h.runtime.log.length;
    // A re-release of the same bytes under a new version and counter, by another rollout.
    const same = await release('1.0.1', 2, versions.get('1.0.0/1')?.bytes);
    expect(same.release.sha256).toBe(v1.release.sha256);
    await h.manager.apply(assignmentOf(same, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.states(v1.release.sha256).slice(-1)).toEqual(['committed']);
    expect(h.events.at(-1)).toMatchObject({
      rolloutId: 'r2',
      severity: 'info',
      data: { state: 'committed', from: null, code: 'already_active', target: { id: 'det@1.0.1' } },
    });
    const report = h.manager.report();
    expect(report).toMatchObject({
      active: { id: 'det@1.0.0', sha256: v1.release.sha256 },
      previous: LOCAL,
      update: {
        rolloutId: 'r2',
        target: { id: 'det@1.0.1' },
        state: 'committed',
        code: 'already_active',
        reason: expect.stringMatching(/^already_active: det@1\.0\.1 has the bytes of the active model det@1\.0\.0/),
      },
      highestReleaseCounter: 1,
    });
    expect(() => Reported.shape.model.parse(report)).not.toThrow();
    expect(h.reports.at(-1)?.update?.code).toBe('already_active');
    // Nothing was downloaded, loaded, activated or released; the counter did not move.
    expect(server.requests).toHaveLength(1);
    expect(h.runtime.log.length).toBe(runtimeLog);
    expect(h.storage.readTable().highest.det?.counter).toBe(1);
    expect(h.logs()).toContain('info model update not needed: the same bytes already run');
    // Delivered again (a reconnect re-sends the retained desired state): nothing more happens.
    const events = h.events.length;
    await h.manager.apply(assignmentOf(same, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.events.length).toBe(events);
  });

  it('reports the model it had before the rollout at once when the rollout is aborted mid-download', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    const slow = await release('2.0.0', 2, randomBytes(400_000));
    server.throttle(16 * 1024, 20);
    await h.manager.apply(assignmentOf(slow, { rolloutId: 'r2' }));
    await waitFor(() => (server.requestsFor(registryPath(slow))[0]?.bytesSent ?? 0) > 32 * 1024);
    // Abort: desired state names the previous model again, under the aborted rollout's id.
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.states(slow.release.sha256)).toEqual(['notified', 'downloading', 'reverted']);
    expect(h.manager.report()).toMatchObject({
      active: { id: 'det@1.0.0' },
      update: { rolloutId: 'r2', target: { id: 'det@1.0.0' }, state: 'committed', code: 'already_active' },
    });
    expect(h.reports.at(-1)?.update).toMatchObject({ rolloutId: 'r2', state: 'committed' });
  });

  it('reports the rollback of a committed switch as soon as it is back on the previous model, without a restart', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await h.manager.idle();
    const reports = h.reports.length;
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r2' }));
    await h.manager.idle();
    const last = h.reports.at(-1);
    expect(h.reports.length).toBeGreaterThan(reports);
    expect(last).toMatchObject({
      active: { id: 'det@1.0.0' },
      previous: { id: 'det@2.0.0' },
      update: { rolloutId: 'r2', target: { id: 'det@1.0.0' }, state: 'committed' },
    });
    expect(last?.update?.code).toBeUndefined();
  });

  it('logs one line per update transition: started, switched, committed; refused with its code; reverted with its reason', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    expect(h.logs()).toEqual(['info model update started', 'info model switched', 'info model update committed']);
    expect(h.lines.find((line) => line.msg === 'model switched')?.fields).toMatchObject({
      component: 'model-manager',
      rolloutId: 'r1',
      target: 'det@1.0.0',
      previous: 'local@0.1.0',
    });

    h.lines.length = 0;
    const tampered = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf({ ...tampered, release: { ...tampered.release, releaseCounter: 9 } }));
    await h.manager.idle();
    expect(h.logs()).toEqual(['info model update started', 'warn model update refused']);
    expect(h.lines.at(-1)?.fields).toMatchObject({ code: 'bad_signature', target: 'det@2.0.0' });

    h.lines.length = 0;
    const v3 = await release('3.0.0', 3);
    h.runtime.behaviours.set(v3.release.sha256, { health: 'latency' });
    await h.manager.apply(assignmentOf(v3, { rolloutId: 'r3' }));
    await h.manager.idle();
    expect(h.logs()).toEqual([
      'info model update started',
      'info model switched',
      'warn model update reverted: the previous model runs again',
    ]);
    expect(h.lines.at(-1)?.fields).toMatchObject({
      rolloutId: 'r3',
      code: expect.any(String),
      reason: expect.any(String),
    });
    h.lines.length = 0;
    const v4 = await release('4.0.0', 4);
    h.runtime.behaviours.set(v4.release.sha256, { warm: 'fail' });
    await h.manager.apply(assignmentOf(v4, { rolloutId: 'r4' }));
    await h.manager.idle();
    expect(h.logs()).toEqual([
      'info model update started',
      'warn model update failed before the switch: the running model stays',
    ]);
    expect(h.lines.at(-1)?.fields).toMatchObject({ from: 'warming', code: 'warmup_failed' });
    // The steps in between are debug lines only.
    expect(h.lines.filter((line) => line.level === 'debug').map((line) => line.msg)).toContain(
      'model update downloading',
    );
  });

  it('refuses a release before downloading it, and does not retry the same assignment', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const tampered = { ...v1, release: { ...v1.release, releaseCounter: 7 } };
    await h.manager.apply(assignmentOf(tampered));
    await h.manager.idle();
    expect(h.states(v1.release.sha256)).toEqual(['notified', 'reverted']);
    expect(h.events.at(-1)).toMatchObject({ severity: 'warning', data: { code: 'bad_signature' } });
    expect(h.manager.report().update).toMatchObject({
      state: 'reverted',
      reason: expect.stringMatching(/^bad_signature: /),
    });
    expect(server.requests).toHaveLength(0);
    expect(h.runtime.active()).toEqual(LOCAL);
    await h.manager.apply(assignmentOf(tampered));
    await h.manager.idle();
    expect(h.states(v1.release.sha256)).toHaveLength(2);

    const mismatch = assignmentOf(v1);
    await h.manager.apply({ ...mismatch, model: { ...mismatch.model, sha256: 'e'.repeat(64) } });
    await h.manager.idle();
    expect(h.events.at(-1)).toMatchObject({ data: { state: 'reverted', code: 'assignment_mismatch' } });
  });

  it('throws away bytes that do not hash to the release and keeps the running model', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const wrong = Buffer.from(versions.get('1.0.0/1')?.bytes ?? []);
    wrong[100] = (wrong[100] ?? 0) ^ 0xff;
    server.serve(registryPath(v1), wrong);
    await h.manager.apply(assignmentOf(v1));
    await h.manager.idle();
    expect(h.states(v1.release.sha256)).toEqual(['notified', 'downloading', 'verifying', 'reverted']);
    expect(h.events.at(-1)).toMatchObject({ data: { code: 'hash_mismatch' } });
    expect(await h.storage.downloadFacts(v1.release.sha256)).toBeNull();
    expect(h.runtime.active()).toEqual(LOCAL);
  });

  it('cancels the update under way when a newer assignment arrives, never running two at once', async () => {
    const h = harness();
    await h.manager.start();
    const slow = await release('2.0.0', 2, randomBytes(400_000));
    const next = await release('3.0.0', 3);
    server.throttle(16 * 1024, 20);
    await h.manager.apply(assignmentOf(slow, { rolloutId: 'r2' }));
    await waitFor(() => (server.requestsFor(registryPath(slow))[0]?.bytesSent ?? 0) > 32 * 1024);
    server.throttle(64 * 1024, 0);
    await h.manager.apply(assignmentOf(next, { rolloutId: 'r3' }));
    await h.manager.idle();
    expect(h.states(slow.release.sha256)).toEqual(['notified', 'downloading', 'reverted']);
    expect(h.events.find((e) => e.data.state === 'reverted')).toMatchObject({
      rolloutId: 'r2',
      severity: 'info',
      data: { code: 'cancelled', reason: expect.stringContaining('det@3.0.0') },
    });
    expect(h.states(next.release.sha256).at(-1)).toBe('committed');
    // The cancelled update's events all came before the new one's first.
    const lastOfSlow = h.events.findLastIndex((e) => (e.data.target as ModelRef).sha256 === slow.release.sha256);
    const firstOfNext = h.events.findIndex((e) => (e.data.target as ModelRef).sha256 === next.release.sha256);
    expect(lastOfSlow).toBeLessThan(firstOfNext);
    expect(h.runtime.active()?.sha256).toBe(next.release.sha256);
  });

  it('rolls a rollout back to the model it replaced without the counter check, and refuses old bytes otherwise', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.manager.report()).toMatchObject({ active: { version: '2.0.0' }, previous: { version: '1.0.0' } });

    // Old bytes under another rollout: the counter says no.
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r-other' }));
    await h.manager.idle();
    expect(h.events.at(-1)).toMatchObject({
      rolloutId: 'r-other',
      data: { state: 'reverted', code: 'release_counter_rollback' },
    });
    expect(h.runtime.active()?.version).toBe('2.0.0');

    // The rollback of r2 (which replaced v1): allowed, from the other slot, nothing downloaded.
    const requests = server.requests.length;
    const back = await releaseRollbackOf(h, v1, 'r2');
    expect(back.states).toEqual(['notified', 'verifying', 'loading', 'warming', 'active', 'committed']);
    expect(server.requests.length).toBe(requests);
    expect(h.runtime.active()?.version).toBe('1.0.0');
    expect(h.manager.report()).toMatchObject({ previous: { version: '2.0.0' }, highestReleaseCounter: 2 });
  });

  it('lets a rollback that already switched finish its health check when a newer assignment arrives', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    const v3 = await release('3.0.0', 3);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await h.manager.idle();
    // r2 is rolled back: v1 again, and its health check is still running when r3 arrives.
    h.runtime.behaviours.set(v1.release.sha256, { health: 'gate' });
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r2' }));
    await waitFor(() => h.runtime.gatesWaiting === 1);
    expect(h.runtime.active()?.version).toBe('1.0.0');
    const newer = h.manager.apply(assignmentOf(v3, { rolloutId: 'r3' }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    h.runtime.openGates();
    await newer;
    await h.manager.idle();
    // The rollback committed; the device never went back to v2 on its way to v3.
    expect(h.states(v1.release.sha256).slice(-2)).toEqual(['active', 'committed']);
    const activations = h.runtime.log.filter((line) => line.startsWith('activate')).slice(-2);
    expect(activations).toEqual(['activate det@1.0.0', 'activate det@3.0.0']);
    expect(h.states(v3.release.sha256).at(-1)).toBe('committed');
  });

  it('goes back to old bytes through a new signed release with a higher counter, reusing the slot', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await h.manager.idle();
    const v1Again = await release('1.0.1', 3, versions.get('1.0.0/1')?.bytes);
    expect(v1Again.release.sha256).toBe(v1.release.sha256);
    const requests = server.requests.length;
    await h.manager.apply(assignmentOf(v1Again, { rolloutId: 'r3' }));
    await h.manager.idle();
    expect(h.states(v1.release.sha256).slice(-6)).toEqual([
      'notified',
      'verifying',
      'loading',
      'warming',
      'active',
      'committed',
    ]);
    expect(server.requests.length).toBe(requests);
    expect(h.storage.readTable()).toMatchObject({
      active: 'a',
      slots: { a: { releaseCounter: 3, ref: { version: '1.0.1' } } },
      highest: { det: { counter: 3, sha256: v1.release.sha256 } },
    });
  });

  it('reverts locally when the health check fails after the switch', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    const slowModel = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await h.manager.idle();
    h.runtime.behaviours.set(slowModel.release.sha256, { health: 'latency' });
    await h.manager.apply(assignmentOf(slowModel, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.states(slowModel.release.sha256).slice(-2)).toEqual(['active', 'reverted']);
    expect(h.events.at(-1)).toMatchObject({
      data: { code: 'health_latency', health: { p95InferenceMs: 300, budgetMs: 150 } },
    });
    expect(h.runtime.active()?.version).toBe('1.0.0');
    expect(h.storage.readTable()).toMatchObject({ active: 'a', highest: { det: { counter: 1 } } });
    expect([...h.runtime.loaded].map((handle) => handle.ref.version)).toEqual(['1.0.0']);
  });

  it('keeps a failed new model running when there is nothing to return to, and says so', async () => {
    const h = harness(createMemoryModelStorage(), new PlayedRuntime({ local: null }));
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    h.runtime.behaviours.set(v1.release.sha256, { health: 'latency' });
    await h.manager.apply(assignmentOf(v1));
    await h.manager.idle();
    expect(h.events.at(-1)).toMatchObject({ data: { state: 'reverted', code: 'health_latency', keptRunning: true } });
    expect(h.runtime.active()?.sha256).toBe(v1.release.sha256);
    expect(h.storage.readTable()).toMatchObject({ active: 'a', highest: {} });
  });

  it('reverts a model that does not load or crashes at warm-up, each with its code', async () => {
    const h = harness();
    await h.manager.start();
    const broken = await release('2.0.0', 2);
    const crashing = await release('3.0.0', 3);
    h.runtime.behaviours.set(broken.release.sha256, { load: 'fail' });
    h.runtime.behaviours.set(crashing.release.sha256, { warm: 'fail' });
    await h.manager.apply(assignmentOf(broken, { rolloutId: 'r2' }));
    await h.manager.idle();
    expect(h.events.at(-1)).toMatchObject({ data: { state: 'reverted', from: 'loading', code: 'model_invalid' } });
    await h.manager.apply(assignmentOf(crashing, { rolloutId: 'r3' }));
    await h.manager.idle();
    expect(h.events.at(-1)).toMatchObject({ data: { state: 'reverted', from: 'warming', code: 'warmup_failed' } });
    expect(h.runtime.active()).toEqual(LOCAL);
  });

  it('runs a shadow assignment beside the active model and switches when promoted', async () => {
    const h = harness();
    await h.manager.start();
    const v2 = await release('2.0.0', 2);
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2', mode: 'shadow' }));
    await waitFor(() => h.manager.report().shadow !== null);
    expect(h.manager.report()).toMatchObject({
      active: LOCAL,
      shadow: { sha256: v2.release.sha256 },
      update: { state: 'shadow' },
    });
    expect(h.runtime.shadowMetrics()?.candidate.sha256).toBe(v2.release.sha256);
    await h.manager.apply(assignmentOf(v2, { rolloutId: 'r2', mode: 'active' }));
    await h.manager.idle();
    expect(h.states(v2.release.sha256)).toEqual([
      'notified',
      'downloading',
      'verifying',
      'loading',
      'warming',
      'shadow',
      'active',
      'committed',
    ]);
    expect(h.manager.report()).toMatchObject({ active: { sha256: v2.release.sha256 }, shadow: null });
    expect(server.requests).toHaveLength(1);
  });

  it('returns to the locally configured model when the desired model is null', async () => {
    const h = harness();
    await h.manager.start();
    const v1 = await release('1.0.0', 1);
    await h.manager.apply(assignmentOf(v1));
    await h.manager.idle();
    await h.manager.apply(null);
    expect(h.runtime.active()).toEqual(LOCAL);
    expect(h.storage.readTable().active).toBeNull();
    expect(h.events.at(-1)).toMatchObject({ data: { state: 'committed', code: 'local_model', target: LOCAL } });
    expect(h.manager.report()).toMatchObject({ active: LOCAL, previous: { version: '1.0.0' }, update: null });
    const count = h.events.length;
    await h.manager.apply(null);
    expect(h.events.length).toBe(count);
  });
});

describe('model manager across restarts', () => {
  it('resumes a download after a restart with a Range request from the bytes held', async () => {
    const storage = createMemoryModelStorage();
    const first = harness(storage);
    await first.manager.start();
    const v2 = await release('2.0.0', 2, randomBytes(400_000));
    server.throttle(16 * 1024, 15);
    await first.manager.apply(assignmentOf(v2));
    await waitFor(() => (server.requests[0]?.bytesSent ?? 0) > 100 * 1024);
    await first.manager.stop();
    const held = (await storage.downloadFacts(v2.release.sha256))?.sizeBytes ?? 0;
    // What the server sent may still be in flight; what was received is held.
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(400_000);
    expect(first.states(v2.release.sha256).at(-1)).toBe('downloading');

    server.throttle(64 * 1024, 0);
    const second = harness(storage);
    await second.manager.start();
    await second.manager.idle();
    expect(second.events[0]).toMatchObject({ data: { state: 'downloading', from: 'downloading', restarted: true } });
    expect(second.states(v2.release.sha256).at(-1)).toBe('committed');
    expect(server.requests[1]?.range).toBe(`bytes=${held}-`);
    expect(second.runtime.active()?.sha256).toBe(v2.release.sha256);
  });

  it('stops a crash loop while loading after MAX_LOAD_ATTEMPTS restarts', async () => {
    const storage = createMemoryModelStorage();
    const v2 = await release('2.0.0', 2);
    const lives: Harness[] = [];
    for (let life = 0; life < 3; life++) {
      const runtime = new PlayedRuntime({ local: LOCAL });
      runtime.behaviours.set(v2.release.sha256, { load: 'hold' });
      const h = harness(storage, runtime);
      lives.push(h);
      await h.manager.start();
      if (life === 0) await h.manager.apply(assignmentOf(v2));
      await waitFor(() => runtime.log.includes('load det@2.0.0') || h.manager.record()?.state === 'reverted');
      await h.manager.stop();
    }
    expect(lives[1]?.events[0]).toMatchObject({ data: { state: 'loading', loadAttempts: 1, restarted: true } });
    expect(lives[2]?.events[0]).toMatchObject({
      severity: 'warning',
      data: { state: 'reverted', code: 'crash_loop', loadAttempts: 2, restarted: true },
    });
    expect(lives[2]?.runtime.log).not.toContain('load det@2.0.0');
    expect(lives[2]?.runtime.active()).toEqual(LOCAL);
  });

  it('reverts a switch that was never committed, putting the old slot back', async () => {
    const storage = createMemoryModelStorage();
    const v1 = await release('1.0.0', 1);
    const v2 = await release('2.0.0', 2);
    const first = harness(storage);
    await first.manager.start();
    await first.manager.apply(assignmentOf(v1, { rolloutId: 'r1' }));
    await first.manager.idle();
    first.runtime.behaviours.set(v2.release.sha256, { health: 'hold' });
    await first.manager.apply(assignmentOf(v2, { rolloutId: 'r2' }));
    await waitFor(() => first.runtime.log.includes('health det@2.0.0'));
    expect(storage.readTable().active).toBe('b');
    await first.manager.stop();

    const runtime = new PlayedRuntime({ local: LOCAL });
    const second = harness(storage, runtime);
    await second.manager.start();
    expect(second.events[0]).toMatchObject({
      rolloutId: 'r2',
      data: { state: 'reverted', from: 'active', code: 'restarted_before_commit' },
    });
    expect(storage.readTable()).toMatchObject({ active: 'a', highest: { det: { counter: 1 } } });
    expect(runtime.active()?.version).toBe('1.0.0');
    expect(runtime.log).toEqual(['load det@1.0.0', 'activate det@1.0.0', 'release local@0.1.0']);
  });
});

async function releaseRollbackOf(h: Harness, signed: SignedModelRelease, rolloutId: string) {
  const from = h.events.length;
  await h.manager.apply(assignmentOf(signed, { rolloutId }));
  await h.manager.idle();
  return { states: h.events.slice(from).map((e) => String(e.data.state)) };
}

async function waitFor(test: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!test()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
