import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT } from '../src/cli/command.ts';
import { openSqlite } from '../src/db/sqlite/database.ts';
import { checkIntegrity, DatabaseCorruptError } from '../src/db/sqlite/integrity.ts';
import { SQLITE_FILE } from '../src/db/sqlite/store.ts';

/*
 * A corrupted SQLite file (pages overwritten anywhere after the first) refuses to start: the real
 * `edgeloop serve` exits with code 4 and one line on stderr naming the file and what to do.
 */

const BIN = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));

let root: string;
/** A migrated, vacuumed database with rows (every page after the first is a b-tree page in use). */
let pristine: string;
let pageSize: number;
let pageCount: number;
/** The first page of the dead_letters table (its rows are there). */
let deadLettersPage: number;

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'edgeloop-integrity-'));
  pristine = join(root, 'pristine.db');
  const db = openSqlite(pristine);
  const insert = db.$client.prepare(
    'INSERT INTO dead_letters (received_at, device_id, topic, reason, detail, payload_size, payload_excerpt) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  for (let i = 0; i < 200; i++)
    insert.run(i, `cam-${i}`, 'fleet/v1/devices/x/telemetry', 'invalid', 'd'.repeat(200), 1, 'eA==');
  db.$client.close();
  const client = new Database(pristine);
  client.exec('VACUUM');
  pageSize = client.pragma('page_size', { simple: true }) as number;
  pageCount = client.pragma('page_count', { simple: true }) as number;
  deadLettersPage = (
    client.prepare("SELECT rootpage FROM sqlite_master WHERE name = 'dead_letters'").get() as {
      rootpage: number;
    }
  ).rootpage;
  client.close();
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A copy of the pristine file in a data dir of its own with `page` (1-based) overwritten by `fill`. */
function damaged(page: number, fill: 'zeros' | 'random' | 'ones'): { dataDir: string; file: string } {
  const dataDir = join(root, `data-${page}-${fill}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dataDir, { mode: 0o700 });
  const file = join(dataDir, SQLITE_FILE);
  copyFileSync(pristine, file);
  const bytes = Buffer.alloc(pageSize, fill === 'ones' ? 0xff : 0);
  if (fill === 'random') for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, bytes, 0, bytes.length, (page - 1) * pageSize);
  } finally {
    closeSync(fd);
  }
  return { dataDir, file };
}

function openError(file: string, integrityCheck?: 'quick' | 'full' | 'off'): unknown {
  try {
    openSqlite(file, integrityCheck ? { integrityCheck } : {}).$client.close();
    return null;
  } catch (error) {
    return error;
  }
}

type ServeRun = { code: number | null; stdout: string; stderr: string };

function serve(dataDir: string, extra: readonly string[] = []): Promise<ServeRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, 'serve', '--http-port', '0', '--mqtt-port', '0', ...extra], {
      env: {
        ...process.env,
        EDGELOOP_DATA_DIR: dataDir,
        EDGELOOP_HOST: '127.0.0.1',
        EDGELOOP_ADMIN_TOKEN: 'integrity-admin-token-0123456789',
        EDGELOOP_HTTP_CONSOLE_DIR: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      // A start that got this far would run until stopped: stop it, the test will fail on the code.
      if (stdout.includes('MQTT  mqtt://')) child.kill('SIGTERM');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('the integrity check at start (openSqlite)', () => {
  it('passes a healthy file under quick and full', () => {
    const client = new Database(pristine);
    expect(checkIntegrity(client, 'quick')).toBeNull();
    expect(checkIntegrity(client, 'full')).toBeNull();
    client.close();
    expect(openError(pristine, 'full')).toBeNull();
  });

  it.each([
    ['the second page', (): number => 2, 'zeros'],
    ['a middle page', (): number => Math.ceil(pageCount / 2), 'random'],
    ['the last page', (): number => pageCount, 'ones'],
    ['a page of the dead_letters table', (): number => deadLettersPage, 'random'],
  ] as const)('refuses a file with %s overwritten, naming the file', (_name, page, fill) => {
    const { file } = damaged(page(), fill);
    const error = openError(file);
    expect(error).toBeInstanceOf(DatabaseCorruptError);
    const corrupt = error as DatabaseCorruptError;
    expect(corrupt.file).toBe(file);
    expect(corrupt.message).toContain(file);
    expect(corrupt.message).toMatch(/restore it from a backup/);
    expect(corrupt.message).not.toMatch(/\n/);
  });

  it('refuses a file with every page after the first overwritten', () => {
    const { file } = damaged(2, 'random');
    const fd = openSync(file, 'r+');
    const bytes = Buffer.alloc(pageSize * (pageCount - 1), 0x5a);
    writeSync(fd, bytes, 0, bytes.length, pageSize);
    closeSync(fd);
    expect(openError(file)).toBeInstanceOf(DatabaseCorruptError);
  });

  it('refuses a file that is not a database at all (its header overwritten) the same way', () => {
    const { file } = damaged(1, 'random');
    expect(openError(file)).toBeInstanceOf(DatabaseCorruptError);
  });

  it('opens a damaged file with the check off, and the damage shows where it is', () => {
    const { file } = damaged(deadLettersPage, 'zeros');
    const db = openSqlite(file, { integrityCheck: 'off' });
    try {
      expect(db.$client.prepare('SELECT count(*) AS n FROM devices').get()).toEqual({ n: 0 });
      expect(() => db.$client.prepare('SELECT count(*) FROM dead_letters').get()).toThrow(/malformed/);
    } finally {
      db.$client.close();
    }
  });
});

describe('edgeloop serve on a corrupted database', () => {
  it('exits with code 4 and prints one line naming the file and what to do', async () => {
    const { dataDir, file } = damaged(Math.ceil(pageCount / 2), 'random');
    const run = await serve(dataDir);
    expect(run.code).toBe(EXIT.databaseCorrupt);
    expect(run.code).toBe(4);
    const lines = run.stderr.split('\n').filter((line) => line.length > 0);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(file);
    expect(lines[0]).toMatch(
      /^edgeloop: the database .* is corrupt \(.+\): restore it from a backup, or start with --integrity-check off to inspect it$/,
    );
    expect(run.stdout).not.toContain('control plane started');
  });

  it('maps a file that is not a database (SQLITE_NOTADB at open) to the same exit and line', async () => {
    const { dataDir, file } = damaged(1, 'random');
    const run = await serve(dataDir, ['--integrity-check', 'full']);
    expect(run.code).toBe(4);
    const lines = run.stderr.split('\n').filter((line) => line.length > 0);
    expect(lines).toEqual([expect.stringContaining(`the database ${file} is corrupt`)]);
    expect(run.stderr).not.toMatch(/\bat .*\.ts:\d+/); // no stack trace
  });
});
