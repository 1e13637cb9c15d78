import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Desired, decode, type Reported } from '@edgeloop/protocol';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createDesiredState,
  createFileDesiredStore,
  createMemoryDesiredStore,
  type DesiredStore,
} from './desired-state.ts';
import { createMemoryOutbox } from './outbox.ts';
import { createPublisher } from './publisher.ts';
import { createSequencer } from './sequencer.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-desired-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function setup(store: DesiredStore) {
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const publisher = createPublisher({ sequencer: createSequencer({ clock: { now: () => 1 } }), outbox });
  let intervalS = 10;
  const telemetry = {
    setIntervalS: (seconds: number) => {
      intervalS = seconds;
    },
    get intervalS() {
      return intervalS;
    },
  };
  const faults: string[] = [];
  const desired = createDesiredState({
    store,
    publisher,
    agentVersion: '1.2.3',
    hardware: { profile: 'orin-nano', arch: 'arm64', platform: 'linux' },
    telemetry,
    defaultTelemetryIntervalS: () => 10,
    onApplyError: (applier) => faults.push(applier),
  });
  const reports = (): Reported[] =>
    outbox.nextBatch(100).map((entry) => {
      outbox.ack(entry.msgId);
      const decoded = decode('reported', entry.payload);
      if (!decoded.ok) throw new Error(decoded.error.message);
      return decoded.value;
    });
  return { desired, reports, interval: () => intervalS, faults };
}

const desiredV = (version: number, extra: Partial<Desired> = {}): Desired => ({ version, issuedAt: 1, ...extra });

describe('desired state', () => {
  it('applies a newer version once and reports it', async () => {
    const { desired, reports, interval } = setup(createMemoryDesiredStore());
    await desired.handle(desiredV(3, { telemetryIntervalS: 5, config: { zone: 'north' } }));
    await desired.handle(desiredV(3, { telemetryIntervalS: 99 }));
    await desired.handle(desiredV(2, { telemetryIntervalS: 99 }));
    expect(interval()).toBe(5);
    expect(reports()).toEqual([
      expect.objectContaining({
        agentVersion: '1.2.3',
        desiredVersion: 3,
        telemetryIntervalS: 5,
        config: { zone: 'north' },
        hardware: { profile: 'orin-nano', arch: 'arm64', platform: 'linux' },
      }),
    ]);
    expect(desired.stats()).toMatchObject({ appliedVersion: 3, applied: 1, ignored: 2 });
  });

  it('goes back to the local interval when desired no longer sets one', async () => {
    const { desired, interval } = setup(createMemoryDesiredStore());
    await desired.handle(desiredV(1, { telemetryIntervalS: 5 }));
    await desired.handle(desiredV(2));
    expect(interval()).toBe(10);
  });

  it('runs registered appliers in order and survives one that throws', async () => {
    const { desired, faults, reports } = setup(createMemoryDesiredStore());
    const seen: string[] = [];
    desired.registerApplier('model', async (message, { previous }) => {
      seen.push(`model:${message.version}:${previous?.version ?? 'none'}`);
      throw new Error('download failed');
    });
    desired.registerApplier('other', (message) => {
      seen.push(`other:${message.version}`);
    });
    desired.addReportSource(() => ({ providers: ['cpu'] }));
    await desired.handle(desiredV(1));
    await desired.handle(desiredV(2));
    expect(seen).toEqual(['model:1:none', 'other:1', 'model:2:1', 'other:2']);
    expect(faults).toEqual(['model', 'model']);
    expect(reports().map((report) => [report.desiredVersion, report.providers])).toEqual([
      [1, ['cpu']],
      [2, ['cpu']],
    ]);
  });

  it('persists the applied desired atomically and re-applies it after a restart', async () => {
    const file = path.join(dir, 'desired.json');
    const first = setup(createFileDesiredStore(file));
    await first.desired.handle(desiredV(7, { telemetryIntervalS: 3 }));
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ version: 7, telemetryIntervalS: 3 });

    const second = setup(createFileDesiredStore(file));
    await second.desired.start();
    expect(second.interval()).toBe(3);
    expect(second.desired.appliedVersion).toBe(7);
    // The broker re-delivers the retained message: not newer, ignored.
    await second.desired.handle(desiredV(7, { telemetryIntervalS: 3 }));
    expect(second.desired.stats()).toMatchObject({ applied: 1, ignored: 1 });
    expect(second.reports()).toEqual([]);
  });

  it('ignores a corrupt stored desired file', async () => {
    const file = path.join(dir, 'desired.json');
    writeFileSync(file, '{"version": "seven"');
    const { desired, interval } = setup(createFileDesiredStore(file));
    await desired.start();
    expect(desired.appliedVersion).toBe(0);
    expect(interval()).toBe(10);
  });
});
