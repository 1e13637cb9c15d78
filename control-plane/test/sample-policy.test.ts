import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMMAND_ARGS, Desired, SamplePolicy, topicFor } from '@edgeloop/protocol';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../src/cli.ts';
import { eventually, startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * PUT /api/v1/sample-policy against a real control plane: real devices (mqtt.js clients) receive
 * the policy in their retained desired state, fleet-wide or by label selector, enrolled before or
 * after the policy was set.
 */

let t: TestControlPlane;
let viewerToken: string;

const nearThreshold = {
  strategies: [{ kind: 'near-threshold', threshold: 0.5, epsilon: 0.1 }],
  limits: { perMinute: 10, bytesPerDay: 2_000_000 },
};
const rare = { strategies: [{ kind: 'class-rare', classes: ['forklift'] }], limits: { perMinute: 2 } };

beforeAll(async () => {
  t = await startTestControlPlane();
  viewerToken = (await t.createToken('viewer', 'reader')).secret;
});
afterAll(() => t.stop());

/** The latest retained desired state a device receives on its desired topic. */
function watchDesired(client: MqttClient, id: string) {
  let latest: Desired | null = null;
  client.on('message', (topic, payload) => {
    if (topic === topicFor(id, 'desired')) latest = Desired.parse(JSON.parse(payload.toString()));
  });
  return {
    ready: client.subscribeAsync(topicFor(id, 'desired'), { qos: 1 }),
    latest: () => latest,
  };
}

describe('sample policy by label selector', () => {
  it('publishes a fleet-wide policy to every device, then a more specific selector wins on its devices', async () => {
    const north = await t.device('policy-north', { labels: { site: 'north' } });
    const south = await t.device('policy-south', { labels: { site: 'south' } });
    const northDesired = watchDesired(north.client, north.id);
    const southDesired = watchDesired(south.client, south.id);
    await Promise.all([northDesired.ready, southDesired.ready]);

    const fleetWide = await t.raw('PUT', '/api/v1/sample-policy', { body: { policy: nearThreshold } });
    expect(fleetWide.status).toBe(200);
    expect(await fleetWide.json()).toMatchObject({ selector: { labels: {} }, devices: 2, changed: 2 });
    for (const watch of [northDesired, southDesired]) {
      const desired = await eventually(() => watch.latest()?.samplePolicy);
      expect(SamplePolicy.parse(desired).strategies[0]).toMatchObject({ kind: 'near-threshold', threshold: 0.5 });
      expect(SamplePolicy.parse(desired).limits).toMatchObject({ perMinute: 10, bytesPerDay: 2_000_000 });
    }

    const bySite = await t.raw('PUT', '/api/v1/sample-policy', {
      body: { selector: { labels: { site: 'north' } }, policy: rare },
    });
    expect(await bySite.json()).toMatchObject({ devices: 1, changed: 1 });
    await eventually(
      () => SamplePolicy.parse(northDesired.latest()?.samplePolicy).strategies[0]?.kind === 'class-rare',
    );
    expect(SamplePolicy.parse(southDesired.latest()?.samplePolicy).strategies[0]?.kind).toBe('near-threshold');

    // Removing the site policy sends the north device back to the fleet-wide one.
    const removed = await t.raw('PUT', '/api/v1/sample-policy', {
      body: { selector: { labels: { site: 'north' } }, policy: null },
    });
    expect(await removed.json()).toMatchObject({ policy: null, devices: 1, changed: 1 });
    await eventually(
      () => SamplePolicy.parse(northDesired.latest()?.samplePolicy).strategies[0]?.kind === 'near-threshold',
    );
  });

  it('gives a device enrolled later the policy of the selector it matches, and follows a label change', async () => {
    await t.raw('PUT', '/api/v1/sample-policy', { body: { selector: { labels: { site: 'dock' } }, policy: rare } });
    const late = await t.device('policy-late', { labels: { site: 'dock' } });
    const watch = watchDesired(late.client, late.id);
    await watch.ready;
    const desired = (await eventually(() => watch.latest())) as Desired;
    expect(SamplePolicy.parse(desired.samplePolicy).strategies[0]).toMatchObject({ kind: 'class-rare' });
    expect(desired.version).toBe(1);

    const moved = await t.raw('PATCH', `/api/v1/devices/${late.id}`, { body: { labels: { site: 'yard' } } });
    expect(moved.status).toBe(200);
    await eventually(() => SamplePolicy.parse(watch.latest()?.samplePolicy).strategies[0]?.kind === 'near-threshold');
  });

  it('keeps the sample policy when another desired-state field changes', async () => {
    const before = (await t.store.devices.get('policy-south'))?.desired;
    const response = await t.raw('PUT', '/api/v1/devices/policy-south/desired', { body: { telemetryIntervalS: 7 } });
    const { desired } = (await response.json()) as { desired: Desired };
    expect(desired.telemetryIntervalS).toBe(7);
    expect(desired.samplePolicy).toEqual(before?.samplePolicy);
    expect(desired.samplePolicy).toBeTruthy();
  });

  it('refuses a malformed policy with 422 and the zod issues, and stores nothing', async () => {
    const before = await (await t.raw('GET', '/api/v1/sample-policy')).json();
    const versionBefore = (await t.store.devices.get('policy-south'))?.desired?.version;
    const response = await t.raw('PUT', '/api/v1/sample-policy', {
      body: {
        selector: { labels: { site: 'south' } },
        policy: { strategies: [{ kind: 'near-threshold', threshold: 7 }], limits: { perMinute: -1 } },
      },
    });
    expect(response.status).toBe(422);
    const error = (await response.json()) as { error: { code: string; message: string } };
    expect(error.error.code).toBe('unprocessable');
    expect(error.error.message).toMatch(/threshold/);
    expect(await (await t.raw('GET', '/api/v1/sample-policy')).json()).toEqual(before);
    expect((await t.store.devices.get('policy-south'))?.desired?.version).toBe(versionBefore);
  });

  it('lists the stored selector policies to a viewer, and refuses a viewer that sets one', async () => {
    const listed = await t.raw('GET', '/api/v1/sample-policy', { token: viewerToken });
    expect(listed.status).toBe(200);
    const { items } = (await listed.json()) as { items: { selector: { labels: Record<string, string> } }[] };
    expect(items.map((item) => item.selector.labels)).toEqual(expect.arrayContaining([{}, { site: 'dock' }]));
    expect(items).toHaveLength(2);
    const refused = await t.raw('PUT', '/api/v1/sample-policy', { token: viewerToken, body: { policy: rare } });
    expect(refused.status).toBe(403);
  });
});

describe('edgeloop samples policy', () => {
  async function cli(...argv: string[]) {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runCli(
      argv,
      { EDGELOOP_URL: t.started.httpUrl, EDGELOOP_TOKEN: t.adminToken },
      {
        out: (text) => out.push(text),
        err: (text) => err.push(text),
        waitForShutdown: () => new Promise<string>(() => undefined),
      },
    );
    return { code, out: out.join(''), err: err.join('') };
  }

  it('sets a policy from a file for a selector, and lists it as a table and as JSON', async () => {
    const device = await t.device('policy-cli-cam', { labels: { site: 'cli', line: '1' } });
    const watch = watchDesired(device.client, device.id);
    await watch.ready;
    const dir = mkdtempSync(join(tmpdir(), 'edgeloop-policy-'));
    const file = join(dir, 'policy.json');
    writeFileSync(file, JSON.stringify({ strategies: [{ kind: 'random', share: 0.25 }], limits: { perDay: 40 } }));

    const set = await cli('samples', 'policy', 'set', '--file', file, '--selector', 'site=cli', '--selector', 'line=1');
    expect(set).toMatchObject({ code: 0, out: expect.stringMatching(/site=cli,line=1: 1 devices match, 1 desired/) });
    await eventually(() => SamplePolicy.parse(watch.latest()?.samplePolicy ?? {}).strategies[0]?.kind === 'random');

    const listed = await cli('samples', 'policy', 'get');
    expect(listed.out).toMatch(/site=cli,line=1\s+true\s+random\s+-\s+40/);
    const asJson = await cli('samples', 'policy', 'get', '--json');
    const items = JSON.parse(asJson.out) as { selector: { labels: Record<string, string> } }[];
    expect(items.map((item) => item.selector.labels)).toContainEqual({ site: 'cli', line: '1' });

    writeFileSync(file, JSON.stringify({ strategies: [{ kind: 'random', share: 3 }] }));
    const refused = await cli('samples', 'policy', 'set', '--file', file, '--selector', 'site=cli');
    expect(refused.code).not.toBe(0);
    expect(refused.err).toMatch(/share/);
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends the capture command with its frames as a number, as the agent parses it', async () => {
    const device = await t.device('policy-capture-cam');
    await device.answerCommands((command) => {
      const parsed = COMMAND_ARGS.capture.safeParse(command.args);
      return parsed.success
        ? { ok: true, data: { frames: parsed.data.frames } }
        : { ok: false, error: { code: 'invalid_args', message: parsed.error.message } };
    });
    const sent = await cli('devices', 'command', device.id, 'capture', '--arg', 'frames=3', '--json');
    expect(sent.code).toBe(0);
    expect(JSON.parse(sent.out)).toMatchObject({ ok: true, data: { frames: 3 } });
    const refused = await cli('devices', 'command', device.id, 'capture', '--arg', 'frames=0');
    expect(refused.code).toBe(1);
    expect((await cli('devices', 'command', '--help')).out).toMatch(/Known commands: .*capture/);
  });
});
