import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { commandHelp } from '../src/cli/command.ts';
import { bashCompletion, zshCompletion } from '../src/cli/completion.ts';
import { commandTree, runCli } from '../src/cli.ts';
import { eventually, startTestControlPlane, type TestControlPlane, type TestDevice } from './harness.ts';
import { createSigningKit, type SigningKit } from './model-fixtures.ts';

/* Every `edgeloop` client command against a running control plane, as an operator calls them. */

const bin = fileURLToPath(new URL('../bin/edgeloop.js', import.meta.url));
const completions = (name: string) => fileURLToPath(new URL(`../completions/${name}`, import.meta.url));

let kit: SigningKit;
let t: TestControlPlane;
let responder: TestDevice;

function io(options: { isTty?: boolean } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: {
      out: (text: string) => out.push(text),
      err: (text: string) => err.push(text),
      waitForShutdown: () => new Promise<string>(() => undefined),
      ...options,
    },
  };
}

async function cli(...argv: string[]) {
  const captured = io();
  const code = await runCli(argv, { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken }, captured.io);
  return { code, out: captured.out.join(''), err: captured.err.join('') };
}

/** A port nothing listens on (bound, then released). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  kit = createSigningKit();
  t = await startTestControlPlane({ trustedKeys: kit.publicKeyPath });
  // A connected device that answers every command with its name and arguments.
  responder = await t.device('cli-responder', { labels: { site: 'cli' } });
  await responder.answerCommands((command) =>
    command.name === 'explode'
      ? { ok: false, error: { code: 'failed', message: 'boom' } }
      : { ok: true, data: { name: command.name, args: command.args } },
  );
  const bytes = kit.modelBytes(20_000);
  const signed = await kit.sign(bytes, { name: 'cmdet', version: '1.0.0', adapter: 'yolo' });
  writeFileSync(`${kit.dir}/cmdet.release.json`, JSON.stringify(signed));
  writeFileSync(`${kit.dir}/cmdet.onnx`, bytes);
  expect(
    (await cli('models', 'upload', '--release', `${kit.dir}/cmdet.release.json`, '--model', `${kit.dir}/cmdet.onnx`))
      .code,
  ).toBe(0);
  for (const id of ['cli-w1', 'cli-w2', 'cli-w3']) await t.enroll(id, { site: 'watch' });
});

afterAll(async () => {
  await t?.stop();
  kit?.dispose();
});

describe('edgeloop --help', () => {
  it('answers --help for every group and command with usage, flags and examples, exit 0', async () => {
    const tree = commandTree();
    const commands = [...tree.commands, ...tree.groups.flatMap((group) => group.commands)];
    expect(commands.length).toBeGreaterThan(15);
    for (const command of commands) {
      const help = await cli(...command.words, '--help');
      expect(help, command.words.join(' ')).toMatchObject({ code: 0, err: '' });
      expect(help.out).toBe(commandHelp(command));
      expect(help.out).toMatch(/^Usage: edgeloop /);
      expect(help.out).toMatch(/\nExamples:\n {2}edgeloop /);
    }
    for (const group of tree.groups) {
      const help = await cli(group.name, '--help');
      expect(help.code).toBe(0);
      expect(help.out).toContain(`Usage: edgeloop ${group.name} COMMAND`);
      for (const command of group.commands) expect(help.out).toContain(`  ${command.words[1]}`);
    }
  });

  it('never answers "needs a value" to --help, wherever it stands', async () => {
    for (const [argv, usage] of [
      [['rollouts', '--help'], 'Usage: edgeloop rollouts COMMAND'],
      [['rollouts', 'create', '--model', '--help'], 'Usage: edgeloop rollouts create [flags]'],
      [['devices', 'list', '--label', '--help'], 'Usage: edgeloop devices list [flags]'],
      [['help', 'rollouts', 'watch'], 'Usage: edgeloop rollouts watch ID [flags]'],
    ] as const) {
      const help = await cli(...argv);
      expect(help, argv.join(' ')).toMatchObject({ code: 0, err: '' });
      expect(help.out).toContain(usage);
    }
  });

  it('refuses an unknown flag with exit 2, naming the command to ask for help', async () => {
    const bad = await cli('rollouts', 'list', '--stauts', 'running');
    expect(bad.code).toBe(2);
    expect(bad.err).toBe(
      'edgeloop: unknown flag --stauts for edgeloop rollouts list (see edgeloop rollouts list --help)\n',
    );
  });
});

describe('labels', () => {
  it('filters devices list with key=value, the syntax enroll takes', async () => {
    await cli('devices', 'enroll', 'cli-labelled', '--label', 'site=label-test');
    const listed = await cli('devices', 'list', '--label', 'site=label-test', '--json');
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.out).map((d: { id: string }) => d.id)).toEqual(['cli-labelled']);
  });

  it('refuses key:value with a message saying to use key=value', async () => {
    const refused = await cli('devices', 'list', '--label', 'site:label-test');
    expect(refused.code).toBe(2);
    expect(refused.err).toBe('edgeloop: --label takes key=value, got "site:label-test"; use site=label-test\n');
  });
});

describe('--json', () => {
  it('gives parseable JSON on stdout, and nothing else there, for every client command', async () => {
    const calls: string[][] = [
      ['fleet'],
      ['devices', 'list'],
      ['devices', 'get', 'cli-responder'],
      ['devices', 'enroll', 'cli-json'],
      ['devices', 'delete', 'cli-json'],
      ['devices', 'command', 'cli-responder', 'ping'],
      ['models', 'list'],
      ['models', 'get', 'cmdet', '1.0.0'],
      ['rollouts', 'list'],
      ['rollouts', 'create', '--model', 'cmdet@1.0.0', '--selector', 'site=watch', '--dry-run'],
    ];
    for (const argv of calls) {
      const result = await cli(...argv, '--json');
      expect(result.code, `${argv.join(' ')}: ${result.err}`).toBe(0);
      expect(() => JSON.parse(result.out), argv.join(' ')).not.toThrow();
    }
  });
});

describe('edgeloop fleet', () => {
  it('prints the fleet summary with device counts and pipelines', async () => {
    const fleet = await cli('fleet');
    expect(fleet.code).toBe(0);
    expect(fleet.out).toMatch(/^devices\s+\d+ \(online [1-9]\d*, offline \d+, unknown \d+\)$/m);
    expect(fleet.out).toMatch(/^reporting pipelines\s+\d+$/m);
    const summary = JSON.parse((await cli('fleet', '--json')).out);
    expect(fleet.out).toMatch(new RegExp(`^devices\\s+${summary.total} \\(online ${summary.online}, `, 'm'));
    expect(fleet.out).toMatch(new RegExp(`^health\\s+healthy ${summary.healthy}, degraded ${summary.degraded}$`, 'm'));
  });
});

describe('edgeloop devices command', () => {
  it('sends the command with its arguments and shows the reply', async () => {
    const sent = await cli(
      'devices',
      'command',
      'cli-responder',
      'set-telemetry-interval',
      '--arg',
      'seconds=5',
      '--arg',
      'note=hi',
    );
    expect(sent.code).toBe(0);
    expect(sent.out).toMatch(/^cli-responder: set-telemetry-interval ok\n/);
    expect(JSON.parse(sent.out.slice(sent.out.indexOf('\n') + 1))).toEqual({
      name: 'set-telemetry-interval',
      args: { seconds: 5, note: 'hi' },
    });
  });

  it('exits 1 with the device error code when the device answers with an error', async () => {
    const failed = await cli('devices', 'command', 'cli-responder', 'explode', '--timeout', '5');
    expect(failed.code).toBe(1);
    expect(failed.out).toBe('cli-responder: explode failed: failed: boom\n');
  });

  it('exits 1 naming the URL when the device is not connected', async () => {
    const offline = await cli('devices', 'command', 'cli-w1', 'ping');
    expect(offline.code).toBe(1);
    expect(offline.err).toContain(`POST ${t.started.httpUrl}/api/v1/devices/cli-w1/commands failed with 409: conflict`);
  });
});

describe('rollouts get and watch', () => {
  it('shows a rollout with its state, cohorts and verdict section', async () => {
    const created = JSON.parse(
      (await cli('rollouts', 'create', '--model', 'cmdet@1.0.0', '--selector', 'site=watch', '--json')).out,
    );
    const shown = await cli('rollouts', 'get', created.id);
    expect(shown.code).toBe(0);
    expect(shown.out).toMatch(new RegExp(`^rollout\\s+${created.id}$`, 'm'));
    expect(shown.out).toMatch(/^model\s+cmdet@1\.0\.0$/m);
    expect(shown.out).toMatch(/^status\s+running$/m);
    expect(shown.out).toMatch(/no verdict yet|verdict (PASS|FAIL|INCONCLUSIVE)/);
    await cli('rollouts', 'abort', created.id);
  });

  it('follows the event stream as JSON lines and ends when the rollout is aborted', async () => {
    const created = JSON.parse(
      (await cli('rollouts', 'create', '--model', 'cmdet@1.0.0', '--selector', 'site=watch', '--json')).out,
    );
    const watching = io();
    const done = runCli(
      ['rollouts', 'watch', created.id, '--json'],
      { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
      watching.io,
    );
    await eventually(() => watching.out.length > 0);
    expect((await cli('rollouts', 'pause', created.id, '--reason', 'lunch')).code).toBe(0);
    expect((await cli('rollouts', 'abort', created.id, '--reason', 'done')).code).toBe(0);
    expect(await done).toBe(0);
    const lines = watching.out
      .join('')
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as { type: string; data: { id?: string; status?: string } });
    expect(lines[0]).toMatchObject({ type: 'rollout', data: { id: created.id, status: 'running' } });
    const types = lines.map((line) => line.type);
    expect(types).toContain('rollout.paused');
    expect(types.at(-1)).toBe('rollout.aborted');
  });

  it('redraws the rollout table in place on a terminal', async () => {
    const created = JSON.parse(
      (await cli('rollouts', 'create', '--model', 'cmdet@1.0.0', '--selector', 'site=watch', '--json')).out,
    );
    const watching = io({ isTty: true });
    const done = runCli(
      ['rollouts', 'watch', created.id],
      { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
      watching.io,
    );
    await eventually(() => watching.out.length > 0);
    await cli('rollouts', 'abort', created.id);
    expect(await done).toBe(0);
    const frames = watching.out.join('').split('\x1b[H\x1b[2J').filter(Boolean);
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames[0]).toMatch(/^status\s+running$/m);
    expect(frames.at(-1)).toMatch(/^status\s+aborted/m);
  });

  it('returns at once for a rollout that has already ended', async () => {
    const created = JSON.parse(
      (await cli('rollouts', 'create', '--model', 'cmdet@1.0.0', '--selector', 'site=watch', '--json')).out,
    );
    await cli('rollouts', 'abort', created.id);
    const watched = await cli('rollouts', 'watch', created.id);
    expect(watched.code).toBe(0);
    expect(watched.out).toMatch(/^status\s+aborted/m);
  });
});

describe('an unreachable control plane', () => {
  it('names the URL and the network cause, and exits 1 (the real binary)', async () => {
    const port = await closedPort();
    const child = spawn(
      process.execPath,
      [bin, 'devices', 'list', '--url', `http://127.0.0.1:${port}`, '--token', 'x'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr).toBe(
      `edgeloop: cannot reach http://127.0.0.1:${port}/api/v1/devices: connect ECONNREFUSED 127.0.0.1:${port}\n`,
    );
  });
});

describe('shell completions', () => {
  it('prints bash and zsh scripts equal to the committed files', async () => {
    const bash = await cli('completion', 'bash');
    const zsh = await cli('completion', 'zsh');
    expect(bash.out).toBe(bashCompletion(commandTree()));
    expect(zsh.out).toBe(zshCompletion(commandTree()));
    expect(
      readFileSync(completions('edgeloop.bash'), 'utf8'),
      'run: edgeloop completion bash > control-plane/completions/edgeloop.bash',
    ).toBe(bash.out);
    expect(
      readFileSync(completions('_edgeloop'), 'utf8'),
      'run: edgeloop completion zsh > control-plane/completions/_edgeloop',
    ).toBe(zsh.out);
    expect((await cli('completion', 'fish')).code).toBe(2);
  });

  it('completes commands, subcommands, flags and flag values in bash', () => {
    const complete = (line: string) => {
      const script = `source '${completions('edgeloop.bash')}'
COMP_WORDS=(${line}); COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
_edgeloop; printf '%s\\n' "\${COMPREPLY[@]}"`;
      const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
      expect(result.stderr).toBe('');
      return result.stdout.trim().split('\n').filter(Boolean);
    };
    expect(complete('edgeloop ro')).toEqual(['rollouts']);
    expect(complete('edgeloop rollouts w')).toEqual(['watch']);
    expect(complete('edgeloop devices list --st')).toEqual(['--status']);
    expect(complete('edgeloop devices list --status o')).toEqual(['online', 'offline']);
    expect(complete("edgeloop devices command cam-1 ''")).toEqual(expect.arrayContaining(['ping', 'reload-config']));
  });
});
