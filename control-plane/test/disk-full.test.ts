import { execFileSync } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, statfsSync, unlinkSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReadyzResponse } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane, type TestDevice } from './harness.ts';
import { makeJpeg, metadataFor } from './sample-fixtures.ts';

/*
 * The acceptance test of a full disk, for real: the data dir lies on a small tmpfs, a device
 * publishes QoS 1 telemetry, a filler file takes the tmpfs to 0 bytes free. /readyz is 503 naming
 * the disk, a sample upload answers 507, publishes are held (no PUBACK); once the filler is gone,
 * readiness comes back, the held publishes are acked, and every acked msgId is stored exactly once.
 * Mounting needs root (as here and in CI); without it the suite is skipped, saying why.
 */

const root = mkdtempSync(join(tmpdir(), 'edgeloop-diskfull-'));

function mountTmpfs(): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', root], { stdio: 'pipe' });
    return null;
  } catch (error) {
    rmSync(root, { recursive: true, force: true });
    const stderr = (error as { stderr?: Buffer }).stderr?.toString().trim();
    return `cannot mount a tmpfs (needs root): ${stderr || (error as Error).message}`;
  }
}

const skipReason = mountTmpfs();
if (skipReason) console.warn(`disk-full.test.ts skipped: ${skipReason}`);

const filler = join(root, 'filler');
const dataDir = join(root, 'data');
let t: TestControlPlane;
let device: TestDevice;
/** Every msgId the broker acked (PUBACK). */
const acked = new Set<string>();

async function readyz(): Promise<{ status: number; body: ReadyzResponse }> {
  const response = await t.raw('GET', '/readyz', { token: null });
  return { status: response.status, body: (await response.json()) as ReadyzResponse };
}

function freeBytes(): number {
  const stats = statfsSync(root);
  return stats.bavail * stats.bsize;
}

/** Writes the filler until the tmpfs refuses a byte more (ENOSPC). */
function fillDisk(): void {
  const fd = openSync(filler, 'w');
  try {
    const chunk = Buffer.alloc(256 * 1024, 0x42);
    for (;;) {
      let written: number;
      try {
        written = writeSync(fd, chunk);
      } catch (error) {
        if ((error as { code?: string }).code === 'ENOSPC') break;
        throw error;
      }
      if (written < chunk.length) {
        // The last chunk fitted only in part: fill what is left a byte at a time.
        try {
          for (;;) writeSync(fd, Buffer.alloc(1));
        } catch (error) {
          if ((error as { code?: string }).code === 'ENOSPC') break;
          throw error;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
}

async function publish(): Promise<string> {
  const sent = await device.send('telemetry', { intervalS: 10, system: SYSTEM });
  acked.add(sent.msgId);
  return sent.msgId;
}

function storedCounts(): Map<string, number> {
  const rows = t.store.db.$client
    .prepare(
      "SELECT msg_id AS msgId, count(*) AS n FROM messages WHERE device_id = ? AND channel = 'telemetry' GROUP BY msg_id",
    )
    .all(device.id) as { msgId: string; n: number }[];
  return new Map(rows.map((row) => [row.msgId, row.n]));
}

describe.skipIf(skipReason !== null)('a data directory on a tmpfs filled to 0 bytes free', () => {
  beforeAll(async () => {
    mkdirSync(dataDir, { mode: 0o700 });
    t = await startTestControlPlane({
      dataDir,
      minFreeDiskMb: 2,
      readiness: { intervalMs: 200, flushErrorWindowS: 1, retryAfterS: 7 },
      http: { consoleDir: '' },
    });
    // Reconnects on its own: a connection the broker closes gets its unacked publishes resent.
    device = await t.device('diskfull-cam', { reconnectPeriod: 200 });
  });

  afterAll(async () => {
    rmSync(filler, { force: true });
    await t?.stop();
    try {
      execFileSync('umount', [root], { stdio: 'pipe' });
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('is ready with free space, and stores what the device publishes', async () => {
    for (let i = 0; i < 20; i++) await publish();
    expect((await readyz()).status).toBe(200);
    expect(storedCounts().size).toBe(20);
  });

  it('holds publishers, answers 507 and names the disk while full, and loses no acked message once space returns', async () => {
    fillDisk();
    expect(freeBytes()).toBe(0);

    const full = await eventually(async () => {
      const answer = await readyz();
      return answer.status === 503 && answer.body.failing.includes('disk') ? answer : null;
    }, 15_000);
    expect(full!.body.checks.find((check) => check.name === 'disk')?.detail).toMatch(/^(0 B free|a write failed)/);

    // A device's sample upload (its own credential): 507 with Retry-After, nothing read or stored.
    const form = new FormData();
    form.append('metadata', JSON.stringify({ capturedAt: Date.now() }));
    form.append('image', new Blob([new Uint8Array(4096)]), 'sample.jpg');
    const basic = Buffer.from(`${device.id}:${device.password}`).toString('base64');
    const upload = await t.raw('POST', '/api/v1/samples', {
      token: null,
      form,
      headers: { authorization: `Basic ${basic}` },
    });
    expect(upload.status).toBe(507);
    expect(upload.headers.get('retry-after')).toBe('7');
    expect(((await upload.json()) as { error: { code: string } }).error.code).toBe('insufficient_storage');
    const enroll = await t.raw('POST', '/api/v1/devices', { body: { id: 'diskfull-other', labels: {} } });
    expect(enroll.status).toBe(507);

    const metrics = await (await t.raw('GET', '/metrics')).text();
    expect(metrics).toContain('edgeloop_disk_low 1');
    expect(metrics).toContain('edgeloop_ready_check{check="disk"} 0');

    // Published while full: held, not acked (the device keeps them), not stored.
    const storedBefore = storedCounts().size;
    const during = Array.from({ length: 10 }, () => publish());
    await eventually(() => t.cp.internals.ingest.stats().queueDepth > 0, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(acked.size).toBe(storedBefore);
    expect(storedCounts().size).toBe(storedBefore);

    unlinkSync(filler);
    const back = await eventually(async () => {
      const answer = await readyz();
      return answer.status === 200 ? answer : null;
    }, 15_000);
    expect(back!.body.ok).toBe(true);

    const duringIds = await Promise.all(during);
    for (let i = 0; i < 5; i++) await publish();

    const counts = storedCounts();
    for (const msgId of acked) expect(counts.get(msgId), msgId).toBe(1);
    for (const msgId of duringIds) expect(counts.get(msgId), msgId).toBe(1);
    expect(acked.size).toBe(35);
    expect(counts.size).toBe(35);
    expect((await t.raw('POST', '/api/v1/devices', { body: { id: 'diskfull-other', labels: {} } })).status).toBe(201);
  });

  it('answers an upload that meets ENOSPC before the monitor noticed with 507, and the monitor goes low at once', async () => {
    // No polls: only the failed write can tell the monitor.
    t.cp.internals.disk.stop();
    t.cp.internals.readiness.stop();
    const jpeg = await makeJpeg(96, 96, 7);
    try {
      fillDisk();
      expect(t.cp.internals.disk.low()).toBe(false);
      const form = new FormData();
      form.append('metadata', JSON.stringify(metadataFor(device.id, jpeg, { width: 96, height: 96 })));
      form.append('image', new Blob([new Uint8Array(jpeg)]), 'sample.jpg');
      const basic = Buffer.from(`${device.id}:${device.password}`).toString('base64');
      const upload = await t.raw('POST', '/api/v1/samples', {
        token: null,
        form,
        headers: { authorization: `Basic ${basic}` },
      });
      expect(upload.status).toBe(507);
      expect(upload.headers.get('retry-after')).toBe('7');
      expect(t.cp.internals.disk.state()).toMatchObject({ low: true, fullErrorAt: expect.any(Number) });
    } finally {
      rmSync(filler, { force: true });
      t.cp.internals.disk.start();
      t.cp.internals.readiness.start();
    }
    await eventually(async () => (await readyz()).status === 200, 15_000);
  });
});
