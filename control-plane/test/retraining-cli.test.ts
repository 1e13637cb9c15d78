import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RetrainingPolicyView, RetrainingRun } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import { storeSampleIn } from './dataset-fixtures.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

/* `edgeloop retraining policy|trigger|runs|run|claim` against a running control plane (a real socket). */

let t: TestControlPlane;
let dir: string;

beforeAll(async () => {
  t = await startTestControlPlane({ retraining: { intervalS: 3600, pollMs: 60_000 } });
  dir = mkdtempSync(join(tmpdir(), 'edgeloop-retraining-cli-'));
  await storeSampleIn(t, 1);
});

afterAll(async () => {
  await t?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function cli(argv: string[]) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await runCli(
    argv,
    { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
    {
      out: (text) => stdout.push(text),
      err: (text) => stderr.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
    },
  );
  return { code, out: stdout.join(''), err: stderr.join('') };
}

describe('edgeloop retraining', () => {
  it('sets a policy from a file, shows it without its secret, fires a manual run and lists it as pending', async () => {
    const file = join(dir, 'policy.json');
    writeFileSync(
      file,
      JSON.stringify({
        triggers: { drift: { band: 'moderate', windows: 2 }, schedule: { cron: '0 3 * * 1' } },
        cooldownS: 3600,
        dataset: { name: 'retrain-det', query: { site: 'north' } },
      }),
    );
    const set = await cli(['retraining', 'policy', 'set', 'det', '--file', file]);
    expect(set.code).toBe(0);
    expect(set.out).toContain('triggers: drift moderate+ for 2 windows; cron "0 3 * * 1"');
    const got = await cli(['retraining', 'policy', 'get', 'det', '--json']);
    expect((JSON.parse(got.out) as RetrainingPolicyView).webhook).toBeNull();

    const fired = await cli(['retraining', 'trigger', 'det', '--note', 'from the cli', '--json']);
    expect(fired.code).toBe(0);
    const run = JSON.parse(fired.out) as RetrainingRun;
    expect(run).toMatchObject({ status: 'pending', reason: { kind: 'manual', detail: 'manual: from the cli' } });

    const pending = await cli(['retraining', 'runs', '--status', 'pending', '--json']);
    expect((JSON.parse(pending.out) as RetrainingRun[]).map((r) => r.runId)).toEqual([run.runId]);
    const table = await cli(['retraining', 'runs']);
    expect(table.out).toMatch(new RegExp(`${run.runId}\\s+det\\s+pending\\s+manual\\s+retrain-det@1`));

    const claimed = await cli(['retraining', 'claim', run.runId, '--trainer', 'gpu-box-1']);
    expect(claimed.code).toBe(0);
    expect(claimed.out).toContain('claimed by gpu-box-1');
    const shown = await cli(['retraining', 'run', run.runId]);
    expect(shown.out).toContain(`run ${run.runId} of det: claimed`);
    expect((await cli(['retraining', 'claim', run.runId])).code).toBe(1);
  });

  it('exits 2 on a bad status or a missing file, and 1 with the server message on a refused policy', async () => {
    expect((await cli(['retraining', 'runs', '--status', 'lost'])).code).toBe(2);
    expect((await cli(['retraining', 'policy', 'set', 'det'])).code).toBe(2);
    expect((await cli(['retraining', 'policy', 'move', 'det'])).code).toBe(2);
    const file = join(dir, 'bad.json');
    writeFileSync(file, JSON.stringify({ dataset: { name: 'x' }, triggers: { schedule: { cron: '0 25 * * *' } } }));
    const refused = await cli(['retraining', 'policy', 'set', 'det', '--file', file]);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/hour/);
    const help = await cli(['retraining', 'policy', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toContain('write-only');
  });
});
