import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

/*
 * The global setup's promise, tried the way a developer meets it: a real vitest run of a suite
 * that needs PostgreSQL, pointed at a port where nothing listens.
 */

const run = promisify(execFile);
const root = path.dirname(fileURLToPath(import.meta.url));
const vitest = path.join(root, 'node_modules/vitest/vitest.mjs');
const NOBODY = 'postgres://postgres@127.0.0.1:9/postgres';

async function vitestRun(env: Record<string, string | undefined>) {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, EDGELOOP_TEST_POSTGRES_URL: NOBODY, ...env };
  for (const [key, value] of Object.entries(env)) if (value === undefined) delete childEnv[key];
  try {
    const { stdout, stderr } = await run(process.execPath, [vitest, 'run', 'control-plane/test/postgres.test.ts'], {
      cwd: root,
      env: childEnv,
      timeout: 60_000,
    });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

describe('suites that need an external service', () => {
  it('are skipped outside CI with one printed line naming them and the reason', async () => {
    const { code, output } = await vitestRun({ CI: undefined });
    expect(code).toBe(0);
    const lines = output.split('\n').filter((line) => line.includes('[services] skipped'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('PostgreSQL at postgres://postgres@127.0.0.1:9/postgres is unreachable');
    expect(lines[0]).toContain('control-plane/test/postgres.test.ts');
    expect(lines[0]).toContain('control-plane/test/store-contract.test.ts');
  });

  it('fail the run under CI=true with a message naming PostgreSQL', async () => {
    const { code, output } = await vitestRun({ CI: 'true' });
    expect(code).not.toBe(0);
    expect(output).toContain('CI=true: PostgreSQL at postgres://postgres@127.0.0.1:9/postgres is unreachable');
  });
});
