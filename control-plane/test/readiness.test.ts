import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ReadyzResponse } from '@edgeloop/protocol';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IngestBatch } from '../src/db/repositories.ts';
import { createSqliteStore, SQLITE_FILE } from '../src/db/sqlite/store.ts';
import type { FsStats } from '../src/disk-monitor.ts';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * GET /readyz and the disk watermark on a real control plane (real SQLite, broker, HTTP), with
 * the data dir's free space given through deps.statfs. The real full disk (a tmpfs filled to 0
 * bytes) is disk-full.test.ts.
 */

const MIB = 1024 * 1024;

let t: TestControlPlane;
let freeBytes = 500 * MIB;
let failCommits: Error | null = null;

const statfs = (): FsStats => ({
  bsize: 4096,
  blocks: 262_144,
  bavail: Math.floor(freeBytes / 4096),
  files: 0,
  ffree: 0,
});

/** Sets the free space and has the monitor read it now (no wait for its interval). */
function setFree(bytes: number) {
  freeBytes = bytes;
  t.cp.internals.disk.poll();
}

async function readyz(): Promise<{ status: number; body: ReadyzResponse; headers: Headers }> {
  const response = await t.raw('GET', '/readyz', { token: null });
  return { status: response.status, body: (await response.json()) as ReadyzResponse, headers: response.headers };
}

function storedCount(deviceId: string, msgId: string): number {
  const row = t.store.db.$client
    .prepare('SELECT count(*) AS n FROM messages WHERE device_id = ? AND msg_id = ?')
    .get(deviceId, msgId) as { n: number };
  return row.n;
}

beforeAll(async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'edgeloop-ready-'));
  const store = createSqliteStore({ dataDir });
  t = await startTestControlPlane(
    { dataDir, readiness: { intervalMs: 60_000 } },
    {
      statfs,
      store: {
        ...store,
        ingest: {
          ...store.ingest,
          commit: (batch: IngestBatch) => {
            if (failCommits) return Promise.reject(failCommits);
            return store.ingest.commit(batch);
          },
        },
      },
    },
  );
});

afterAll(async () => {
  await t?.stop();
  if (t) rmSync(t.dataDir, { recursive: true, force: true });
});

describe('GET /readyz', () => {
  it('answers 200 without a token when every check passes, naming each check', async () => {
    const { status, body, headers } = await readyz();
    expect(status).toBe(200);
    expect(headers.get('cache-control')).toBe('no-store');
    expect(body.ok).toBe(true);
    expect(body.failing).toEqual([]);
    expect(body.checks.map((check) => check.name)).toEqual(['database', 'disk', 'mqtt', 'ingest']);
    expect(body.checks.find((check) => check.name === 'mqtt')?.detail).toBe(`listening on port ${t.started.mqttPort}`);
    expect(body.checks.find((check) => check.name === 'disk')?.detail).toMatch(/^500 MiB free/);
  });

  it('names the database while another connection holds its write lock', async () => {
    const other = new Database(join(t.dataDir, SQLITE_FILE));
    t.store.db.$client.pragma('busy_timeout = 50');
    try {
      other.exec('BEGIN IMMEDIATE');
      const { status, body } = await readyz();
      expect(status).toBe(503);
      expect(body.failing).toEqual(['database']);
      expect(body.checks[0]!.detail).toMatch(/^not writable: database is locked/);
      expect(body.error?.message).toMatch(/^not ready: database/);
    } finally {
      other.exec('ROLLBACK');
      other.close();
      t.store.db.$client.pragma('busy_timeout = 5000');
    }
    expect((await readyz()).status).toBe(200);
  });

  it('names ingest after a batch failed to commit', async () => {
    const device = await t.device('ready-ingest-cam');
    failCommits = new Error('disk I/O error');
    try {
      // The failed batch is not acked: the broker closes the connection instead (the publish never settles).
      device.send('telemetry', { intervalS: 10, system: SYSTEM }).catch(() => undefined);
      const answer = await eventually(async () => {
        const candidate = await readyz();
        return candidate.body.failing.includes('ingest') ? candidate : null;
      }, 10_000);
      const { status, body } = answer!;
      expect(status).toBe(503);
      expect(body.checks[3]!.detail).toMatch(/a batch failed to commit \d+ s ago: disk I\/O error/);
    } finally {
      failCommits = null;
    }
  });
});

describe('below the disk watermark (--min-free-disk-mb, default 64)', () => {
  it('makes /readyz 503 naming the disk, and says so in the metrics', async () => {
    setFree(10 * MIB);
    try {
      const { status, body } = await readyz();
      expect(status).toBe(503);
      expect(body.failing).toContain('disk');
      expect(body.checks[1]!.detail).toMatch(/10 MiB free, at or below the watermark of 64 MiB/);
      const metrics = await t.raw('GET', '/metrics');
      const text = await metrics.text();
      expect(text).toContain(`edgeloop_disk_free_bytes ${10 * MIB}`);
      expect(text).toContain('edgeloop_disk_low 1');
      expect(text).toContain('edgeloop_ready 0');
      expect(text).toContain('edgeloop_ready_check{check="disk"} 0');
    } finally {
      setFree(500 * MIB);
    }
  });

  it('answers enrollment, sample and model uploads with 507 and Retry-After, and lets reads and deletes go', async () => {
    const keep = await t.enroll('ready-low-keep');
    setFree(0);
    try {
      const enroll = await t.raw('POST', '/api/v1/devices', { body: { id: 'ready-low-new', labels: {} } });
      expect(enroll.status).toBe(507);
      expect(enroll.headers.get('retry-after')).toBe('30');
      const error = ((await enroll.json()) as { error: { code: string; message: string } }).error;
      expect(error.code).toBe('insufficient_storage');
      expect(error.message).toMatch(/not enough free disk on the control plane: 0 B free/);

      const form = new FormData();
      form.append('metadata', JSON.stringify({}));
      form.append('image', new Blob([new Uint8Array(16)]), 'x.jpg');
      const sample = await t.raw('POST', '/api/v1/samples', {
        token: null,
        form,
        headers: {
          authorization: `Basic ${Buffer.from(`ready-low-keep:${keep.credentials.password}`).toString('base64')}`,
        },
      });
      expect(sample.status).toBe(507);
      expect(sample.headers.get('retry-after')).toBe('30');
      const model = await t.raw('POST', '/api/v1/models', { form: new FormData() });
      expect(model.status).toBe(507);

      expect((await t.client.devices.get('ready-low-keep')).ok).toBe(true);
      expect((await t.client.devices.revoke('ready-low-keep')).ok).toBe(true);
      expect((await t.client.devices.get('ready-low-new')).ok).toBe(false);
    } finally {
      setFree(500 * MIB);
    }
    expect((await t.client.devices.enroll({ id: 'ready-low-new' })).ok).toBe(true);
  });

  it('documents the 507 of guarded writes in OpenAPI', async () => {
    const doc = (await (await t.raw('GET', '/api/v1/openapi.json')).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
    };
    expect(doc.paths['/api/v1/devices']!.post!.responses).toHaveProperty('507');
    expect(doc.paths['/api/v1/samples']!.post!.responses).toHaveProperty('507');
    expect(doc.paths['/api/v1/devices/{id}']!.delete!.responses).not.toHaveProperty('507');
    expect(doc.paths['/api/v1/rollouts/{id}/abort']!.post!.responses).not.toHaveProperty('507');
  });

  it('holds a QoS 1 publish without PUBACK until space returns, then stores it once', async () => {
    const device = await t.device('ready-hold-cam');
    const first = await device.send('telemetry', { intervalS: 10, system: SYSTEM });
    expect(storedCount(device.id, first.msgId)).toBe(1);

    setFree(0);
    let acked = false;
    const held = device.send('telemetry', { intervalS: 10, system: SYSTEM }).then((sent) => {
      acked = true;
      return sent;
    });
    // The publish reached the ingest queue and waits there: nothing stored, nothing acked.
    await eventually(() => t.cp.internals.ingest.stats().queueDepth > 0, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(acked).toBe(false);
    expect(
      t.store.db.$client.prepare("SELECT count(*) AS n FROM messages WHERE device_id = 'ready-hold-cam'").get(),
    ).toEqual({
      n: 1,
    });
    expect(device.client.connected).toBe(true);

    setFree(500 * MIB);
    const sent = await held;
    expect(storedCount(device.id, sent.msgId)).toBe(1);
    expect((await readyz()).body.failing).not.toContain('disk');
  });
});
