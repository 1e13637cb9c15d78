import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createWalCheckpointer, type WalCheckpointer } from './wal-checkpointer.ts';

/*
 * The WAL checkpointer: the main connection's automatic checkpoint is pushed far away (a
 * backstop it never reaches here), so the database file grows only if the worker checkpoints.
 */

let dir: string;
let file: string;
let client: Database.Database;
let checkpointer: WalCheckpointer | null;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'edgeloop-wal-'));
  file = join(dir, 'test.db');
  client = new Database(file);
  client.pragma('journal_mode = WAL');
  client.pragma('synchronous = NORMAL');
  client.exec('CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  checkpointer = null;
});

afterEach(async () => {
  await checkpointer?.stop();
  client.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (count: number) => {
  const statement = client.prepare('INSERT INTO rows (body) VALUES (?)');
  const body = 'x'.repeat(1000);
  client.transaction(() => {
    for (let i = 0; i < count; i++) statement.run(body);
  })();
};

async function until(condition: () => boolean, ms = 5000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('the WAL checkpointer', () => {
  it('copies the WAL into the database file from its worker while the main connection never checkpoints', async () => {
    checkpointer = createWalCheckpointer({ client, file, intervalMs: 20, backstopPages: 1_000_000 });
    checkpointer.start();
    expect(client.pragma('wal_autocheckpoint', { simple: true })).toBe(1_000_000);
    const before = statSync(file).size;
    insert(2000); // about 2 MB of WAL
    await until(() => statSync(file).size > before + 1_000_000);
    expect(client.prepare('SELECT count(*) AS n FROM rows').get()).toEqual({ n: 2000 });
  });

  it('leaves the database file alone when not started (the control for the test above)', async () => {
    client.pragma('wal_autocheckpoint = 1000000');
    const before = statSync(file).size;
    insert(2000);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(statSync(file).size).toBe(before);
  });

  it('starts nothing for an in-memory database, and stops its worker on stop', async () => {
    const memory = new Database(':memory:');
    const none = createWalCheckpointer({ client: memory, file: ':memory:' });
    none.start();
    expect(none.running).toBe(false);
    memory.close();
    checkpointer = createWalCheckpointer({ client, file, intervalMs: 20 });
    checkpointer.start();
    expect(checkpointer.running).toBe(true);
    await checkpointer.stop();
    expect(checkpointer.running).toBe(false);
  });

  it('keeps the process alive until its worker has stopped when nothing else holds the event loop', async () => {
    const module = fileURLToPath(new URL('./wal-checkpointer.ts', import.meta.url));
    const script = [
      `import Database from 'better-sqlite3';`,
      `import { createWalCheckpointer } from ${JSON.stringify(module)};`,
      `const client = new Database(${JSON.stringify(file)});`,
      `const checkpointer = createWalCheckpointer({ client, file: ${JSON.stringify(file)} });`,
      'checkpointer.start();',
      'await checkpointer.stop();',
      'client.close();',
      `console.log('stopped');`,
    ].join('\n');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      script,
    ]);
    expect(stdout.trim()).toBe('stopped');
  });
});
