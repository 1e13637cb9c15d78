import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatProgress, type SampleView } from '@edgeloop/protocol';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { basicAuth, makeJpeg, metadataFor, sha256Hex, uploadSample } from './sample-fixtures.ts';

/* `edgeloop samples list|get|pull` against a running control plane with uploaded samples. */

let t: TestControlPlane;
let out: string;
const jpegs: Buffer[] = [];

beforeAll(async () => {
  t = await startTestControlPlane();
  out = mkdtempSync(join(tmpdir(), 'edgeloop-pull-'));
  const auth = new Map<string, string>();
  for (const id of ['cam-a', 'cam-b']) {
    const enrolled = await t.enroll(id, { site: id === 'cam-a' ? 'north' : 'south' });
    auth.set(id, basicAuth(id, enrolled.credentials.password));
  }
  for (const [i, id] of ['cam-a', 'cam-a', 'cam-b'].entries()) {
    const jpeg = await makeJpeg(80, 60, 50 + i);
    jpegs.push(jpeg);
    await uploadSample(
      t.started.httpUrl,
      auth.get(id)!,
      metadataFor(
        id,
        jpeg,
        { width: 80, height: 60 },
        {
          seq: i,
          strategy: i === 2 ? 'random' : 'near-threshold',
          labels: { site: id === 'cam-a' ? 'north' : 'south' },
          frameTs: Date.parse('2026-06-01T00:00:00Z') + i * 1000,
        },
      ),
      jpeg,
    );
  }
});

afterAll(async () => {
  await t?.stop();
  rmSync(out, { recursive: true, force: true });
});

async function cli(argv: string[], options: { errIsTty?: boolean } = {}) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await runCli(
    argv,
    { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
    {
      out: (text) => stdout.push(text),
      err: (text) => stderr.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
      ...(options.errIsTty !== undefined ? { errIsTty: options.errIsTty } : {}),
    },
  );
  return { code, out: stdout.join(''), err: stderr.join('') };
}

describe('edgeloop samples', () => {
  it('lists samples as a table and as JSON, with filters as flags', async () => {
    const table = await cli(['samples', 'list']);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/ID\s+DEVICE\s+STRATEGY[\s\S]*cam-b\s+random/);
    const asJson = await cli(['samples', 'list', '--json', '--label', 'site=north', '--strategy', 'near-threshold']);
    const items = JSON.parse(asJson.out) as SampleView[];
    expect(items.map((s) => [s.deviceId, s.seq])).toEqual([
      ['cam-a', 1],
      ['cam-a', 0],
    ]);
    const since = await cli(['samples', 'list', '--json', '--from', '2026-06-01T00:00:01.500Z']);
    expect((JSON.parse(since.out) as SampleView[]).map((s) => s.seq)).toEqual([2]);
    expect((await cli(['samples', 'list', '--label', 'site'])).code).toBe(2);
    const one = await cli(['samples', 'get', items[0]!.id]);
    expect(JSON.parse(one.out)).toMatchObject({ id: items[0]!.id, image: { sha256: items[0]!.image.sha256 } });
    expect((await cli(['samples', 'get', 'smp_nope'])).code).toBe(1);
  });

  it('pulls images and metadata with checked sha256, skips what is there, and draws progress only on a terminal', async () => {
    const first = await cli(['samples', 'pull', '--out', out, '--json'], { errIsTty: true });
    expect(first.code).toBe(0);
    expect(JSON.parse(first.out)).toMatchObject({ samples: 3, downloaded: 3, skipped: 0 });
    expect(first.err).toBe(''); // --json: no progress even on a terminal
    const files = readdirSync(out).sort();
    expect(files.filter((f) => f.endsWith('.jpg'))).toHaveLength(3);
    expect(files.filter((f) => f.endsWith('.json'))).toHaveLength(3);
    const pulled = files.filter((f) => f.endsWith('.jpg')).map((f) => sha256Hex(readFileSync(join(out, f))));
    expect(pulled.sort()).toEqual(jpegs.map(sha256Hex).sort());

    const again = await cli(['samples', 'pull', '--out', out, '--device', 'cam-a'], { errIsTty: true });
    expect(again.out).toMatch(/0 downloaded, 2 already there/);
    expect(again.err).toMatch(/\rpull|pull {2}2\/2/);
    const piped = await cli(['samples', 'pull', '--out', out]);
    expect(piped.err).toBe('');
    expect((await cli(['samples', 'pull'])).code).toBe(2);
  });

  it('formats progress as items, bytes and rate', () => {
    expect(formatProgress({ label: 'pull', bytes: 2_500_000, elapsedMs: 2000, items: 3, totalItems: 10 })).toBe(
      'pull  3/10  2.5 MB  1.3 MB/s',
    );
    expect(formatProgress({ label: 'export', bytes: 999, elapsedMs: 0 })).toBe('export  999 B  -');
  });
});
