import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type ModelManifest, ModelManifest as ModelManifestSchema } from '@edgeloop/protocol';
import { afterEach, describe, expect, it } from 'vitest';
import type { SlotEntry } from '../../src/model-update/slots.ts';
import { createFileModelStorage, createMemoryModelStorage, type ModelStorage } from '../../src/model-update/storage.ts';

/* One contract, two storages: files on a device, memory in the simulator. */

const manifest: ModelManifest = ModelManifestSchema.parse({ name: 'det', version: '1.0.0', adapter: 'yolo' });

function model(version: string) {
  const bytes = randomBytes(4096);
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const entry: SlotEntry = {
    ref: { id: `det@${version}`, name: 'det', version, sha256 },
    manifest: { ...manifest, version },
    releaseCounter: Number(version.split('.')[0]),
    installedAt: 1,
  };
  return { bytes, sha256, entry };
}

function download(storage: ModelStorage, bytes: Uint8Array, sha256: string): void {
  const target = storage.openDownload(sha256);
  target.append(bytes.subarray(0, 1000));
  target.close();
  const resumed = storage.openDownload(sha256);
  expect(resumed.size()).toBe(1000);
  resumed.append(bytes.subarray(1000));
  resumed.flush();
  resumed.close();
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const kinds: Array<[string, () => { storage: ModelStorage; reopen: () => ModelStorage; dir: string | null }]> = [
  [
    'file',
    () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-storage-'));
      dirs.push(dir);
      return { storage: createFileModelStorage(dir), reopen: () => createFileModelStorage(dir), dir };
    },
  ],
  [
    'memory',
    () => {
      const storage = createMemoryModelStorage();
      return { storage, reopen: () => storage, dir: null };
    },
  ],
];

describe.each(kinds)('%s model storage', (_kind, make) => {
  it('installs a download into the inactive slot, activates it and keeps what it says across a reopen', async () => {
    const { storage, reopen } = make();
    const v1 = model('1.0.0');
    expect(storage.inactiveSlot()).toBe('a');
    download(storage, v1.bytes, v1.sha256);
    expect(await storage.downloadFacts(v1.sha256)).toEqual({ sizeBytes: 4096, sha256: v1.sha256 });
    await storage.install('a', v1.entry);
    expect(await storage.downloadFacts(v1.sha256)).toBeNull();
    storage.activate('a');
    storage.recordCommit('det', 1, v1.sha256);
    const again = reopen();
    expect(again.readTable()).toMatchObject({ active: 'a', highest: { det: { counter: 1, sha256: v1.sha256 } } });
    expect(again.findSlot(v1.sha256)).toBe('a');
    expect(again.inactiveSlot()).toBe('b');
    expect(await again.slotFacts('a')).toEqual({ sizeBytes: 4096, sha256: v1.sha256 });
    expect(await again.slotFacts('b')).toBeNull();
  });

  it('never installs into the active slot and never records a lower counter', async () => {
    const { storage } = make();
    const v1 = model('1.0.0');
    const v2 = model('2.0.0');
    download(storage, v1.bytes, v1.sha256);
    await storage.install('a', v1.entry);
    storage.activate('a');
    download(storage, v2.bytes, v2.sha256);
    await expect(storage.install('a', v2.entry)).rejects.toMatchObject({ code: 'slot_active' });
    await expect(storage.install('b', model('3.0.0').entry)).rejects.toMatchObject({ code: 'download_missing' });
    storage.recordCommit('det', 5, v2.sha256);
    storage.recordCommit('det', 2, v1.sha256);
    expect(storage.readTable().highest.det).toEqual({ counter: 5, sha256: v2.sha256 });
    expect(() => storage.activate('b')).toThrow();
    storage.activate(null);
    expect(storage.readTable().active).toBeNull();
  });

  it('describes a slot anew for a new release of the same bytes, and discards stale downloads', async () => {
    const { storage } = make();
    const v1 = model('1.0.0');
    download(storage, v1.bytes, v1.sha256);
    await storage.install('a', v1.entry);
    storage.describe('a', {
      ...v1.entry,
      releaseCounter: 9,
      ref: { ...v1.entry.ref, id: 'det@9.0.0', version: '9.0.0' },
    });
    expect(storage.readTable().slots.a).toMatchObject({ releaseCounter: 9, ref: { version: '9.0.0' } });
    const a = model('2.0.0');
    const b = model('3.0.0');
    download(storage, a.bytes, a.sha256);
    download(storage, b.bytes, b.sha256);
    storage.discardDownloads(b.sha256);
    expect(await storage.downloadFacts(a.sha256)).toBeNull();
    expect(await storage.downloadFacts(b.sha256)).not.toBeNull();
  });

  it('round-trips the update state', () => {
    const { storage, reopen } = make();
    expect(storage.loadState()).toBeNull();
    const v1 = model('1.0.0');
    storage.saveState({ record: null, previous: v1.entry.ref, replacedBy: 'r1' });
    expect(reopen().loadState()).toEqual({ record: null, previous: v1.entry.ref, replacedBy: 'r1' });
  });
});

describe('file model storage', () => {
  it('finishes an install cut short between the rename and the slot table write', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-storage-'));
    dirs.push(dir);
    const storage = createFileModelStorage(dir);
    const v1 = model('1.0.0');
    download(storage, v1.bytes, v1.sha256);
    // The crash: the download was renamed into the slot file, slots.json never heard of it.
    renameSync(path.join(dir, 'downloads', `${v1.sha256}.part`), path.join(dir, 'slot-a.onnx'));
    await createFileModelStorage(dir).install('a', v1.entry);
    expect(storage.findSlot(v1.sha256)).toBe('a');
    expect(readFileSync(path.join(dir, 'slot-a.onnx')).equals(v1.bytes)).toBe(true);
  });

  it('ignores an update.json that does not parse', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-storage-'));
    dirs.push(dir);
    const storage = createFileModelStorage(dir);
    storage.saveState({ record: null, previous: null, replacedBy: null });
    expect(existsSync(path.join(dir, 'update.json'))).toBe(true);
    writeFileSync(path.join(dir, 'update.json'), '{"record": 5');
    expect(storage.loadState()).toBeNull();
  });
});
