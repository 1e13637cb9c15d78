import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EXIT_FAILED, EXIT_OK, EXIT_USAGE, runCli } from './cli.ts';
import { generateKeyPair } from './keys.ts';

const DAY = 86_400_000;
const dir = mkdtempSync(path.join(os.tmpdir(), 'edgeloop-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function run(argv: string[], now = Date.parse('2026-06-01T00:00:00Z')) {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await runCli({
    argv,
    stdout: (line) => stdout.push(line),
    stderr: (line) => stderr.push(line),
    clock: { now: () => now },
  });
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('\n') };
}

describe('runCli usage', () => {
  it('prints help for every command', async () => {
    const help = await run(['--help']);
    expect(help.code).toBe(EXIT_OK);
    for (const command of ['keygen', 'sign', 'verify', 'build'])
      expect(help.stdout).toContain(`edgeloop-image ${command}`);
    const signHelp = await run(['sign', '--help']);
    expect(signHelp.code).toBe(EXIT_OK);
    expect(signHelp.stdout).toMatch(/^edgeloop-image sign/);
  });

  it('exits 2 with a clear message for bad usage', async () => {
    const cases: [string[], RegExp][] = [
      [[], /no command given/],
      [['launch'], /unknown command launch/],
      [['keygen'], /missing --out DIR/],
      [['keygen', '--out', dir, '--name', '../evil'], /--name may hold only/],
      [['verify', '--release', 'r.json', '--trust', 'a.pub', '--bogus'], /Unknown option '--bogus'/],
      [['verify', '--release', 'r.json'], /missing --trust/],
      [['verify', '--release', 'r.json', '--trust', 'a.pub', '--min-counter=-1'], /--min-counter -1 is not/],
      [['verify', '--release', 'r.json', '--trust', 'a.pub', '--installed-sha256', 'ab'], /goes with --min-counter/],
      [['sign', '--key', 'k', '--model', 'm', '--manifest', 'f', '--counter', '1.5', '--out', 'o'], /--counter 1.5/],
      [
        ['sign', '--key', 'k', '--model', 'm', '--manifest', 'f', '--counter', '1', '--out', 'o', '--expires-in', '1y'],
        /--expires-in 1y is not a duration/,
      ],
      [
        [
          'sign',
          '--key',
          'k',
          '--model',
          'm',
          '--manifest',
          'f',
          '--counter',
          '1',
          '--out',
          'o',
          '--expires-in',
          '1d',
        ].concat(['--expires-at', '2030-01-01']),
        /not both/,
      ],
      [['build', '--family', 'amiga'], /unknown family amiga; known: orin-nano, rpi5, x86-gpu, x86-cpu/],
      [['build', 'rpi5'], /Unexpected argument 'rpi5'/],
      [['verify', '--release', 'r.json', '--trust', 'a.pub', '--min-counter', 'x'], /--min-counter x is not/],
      [['verify', '--release', 'r.json', '--trust', 'a.pub', '--min-counter'], /argument missing/],
    ];
    for (const [argv, message] of cases) {
      const result = await run(argv);
      expect({ argv, code: result.code }).toEqual({ argv, code: EXIT_USAGE });
      expect(result.stderr).toMatch(message);
    }
  });

  it('prints a recipe as text or JSON', async () => {
    const text = await run(['build', '--family', 'x86-gpu', '--agent-version', '2.0.0']);
    expect(text.code).toBe(EXIT_OK);
    expect(text.stdout).toMatch(/^# RECIPE ONLY/);
    const json = await run(['build', '--family', 'x86-gpu', '--json']);
    expect(JSON.parse(json.stdout)).toMatchObject({
      format: 'edgeloop.image-recipe/v1',
      onnxruntime: { env: { ONNXRUNTIME_NODE_INSTALL: 'cuda12' } },
      agent: { version: '0.1.0' },
    });
  });
});

describe('runCli with an injected clock', () => {
  it('signs with the clock as issuedAt and refuses the release once the clock passes its expiry', async () => {
    const keys = path.join(dir, 'clock-keys');
    const keygen = await run(['keygen', '--out', keys]);
    expect(keygen.code).toBe(EXIT_OK);
    const model = path.join(dir, 'clock.onnx');
    writeFileSync(model, 'model bytes');
    const manifest = path.join(dir, 'clock-manifest.json');
    writeFileSync(manifest, JSON.stringify({ name: 'det', version: '1.0.0', adapter: 'yolo' }));
    const out = path.join(dir, 'clock-release.json');
    const now = Date.parse('2026-06-01T00:00:00Z');
    const sign = await run(
      ['sign', '--key', path.join(keys, 'release.key'), '--model', model, '--manifest', manifest].concat([
        '--counter',
        '2',
        '--expires-in',
        '2d',
        '--out',
        out,
      ]),
      now,
    );
    expect(sign.stderr).toBe('');
    expect(sign.code).toBe(EXIT_OK);
    const written = JSON.parse(readFileSync(out, 'utf8'));
    expect(written.release).toMatchObject({ issuedAt: now, expiresAt: now + 2 * DAY, keyId: keygen.stdout });

    const verify = ['verify', '--release', out, '--trust', path.join(keys, 'release.pub'), '--model', model];
    expect((await run(verify, now + DAY)).code).toBe(EXIT_OK);
    const late = await run(verify, now + 2 * DAY);
    expect(late.code).toBe(EXIT_FAILED);
    expect(late.stderr).toMatch(/^expired: release det@1\.0\.0 expired at 2026-06-03T00:00:00\.000Z/);

    const sha256 = written.release.sha256 as string;
    const reinstall = await run(verify.concat(['--min-counter', '2', '--installed-sha256', sha256]), now);
    expect(reinstall.code).toBe(EXIT_OK);
    const equal = await run(verify.concat(['--min-counter', '2']), now);
    expect(equal.stderr).toMatch(/^release_counter_rollback: /);
  });

  it('fails with one line naming the code for unreadable or wrong inputs', async () => {
    const pair = generateKeyPair();
    const priv = path.join(dir, 'wrong.key');
    writeFileSync(priv, pair.privateKeyPem);
    const notJson = path.join(dir, 'not-json.json');
    writeFileSync(notJson, '{ nope');
    const asTrust = await run(['verify', '--release', notJson, '--trust', priv]);
    expect(asTrust).toMatchObject({ code: EXIT_FAILED });
    expect(asTrust.stderr).toMatch(/^invalid_key: .*wrong\.key: this is a private key/);
    const pub = path.join(dir, 'right.pub');
    writeFileSync(pub, pair.publicKeyPem);
    const malformed = await run(['verify', '--release', notJson, '--trust', pub]);
    expect(malformed.code).toBe(EXIT_FAILED);
    expect(malformed.stderr).toMatch(/^malformed: .*not-json\.json is not JSON/);
    expect(malformed.stderr.split('\n')).toHaveLength(1);
    const missing = await run(['verify', '--release', path.join(dir, 'missing.json'), '--trust', pub]);
    expect(missing.stderr).toMatch(/^file_error: cannot read --release/);
    const signWithPub = await run([
      'sign',
      '--key',
      pub,
      '--model',
      notJson,
      '--manifest',
      notJson,
      '--counter',
      '1',
      '--out',
      notJson,
    ]);
    expect(signWithPub.stderr).toMatch(/^invalid_key: this is a public key/);
  });
});
