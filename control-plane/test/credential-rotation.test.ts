import {
  type Command,
  decode,
  encode,
  messageId,
  ROTATE_CREDENTIALS_COMMAND,
  RotateCredentialsArgs,
  topicFor,
  unwrap,
} from '@edgeloop/protocol';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CommandAnswer,
  newBootId,
  startTestControlPlane,
  type TestControlPlane,
  type TestToken,
} from './harness.ts';
import { basicAuth } from './sample-fixtures.ts';

/*
 * Credential rotation with overlap (issue 12 §5) on a real control plane: real aedes, real HTTP
 * (app.request), real SQLite. The "agent" is an mqtt.js client that does what edgeloop-agent does
 * with rotate-credentials: it logs in again with the new secret and answers on that session. The
 * control plane's clock is injected (Date.now() plus a skew the tests move) for the deadlines.
 */

let t: TestControlPlane;
let operator: TestToken;
let viewer: TestToken;
let skewMs = 0;

beforeAll(async () => {
  // commands.maxTimeoutMs caps the delivery's wait: a silent device times out in a second.
  t = await startTestControlPlane(
    { commands: { defaultTimeoutMs: 1000, maxTimeoutMs: 1000 } },
    { clock: { now: () => Date.now() + skewMs } },
  );
  operator = await t.createToken('operator', 'rotation-operator');
  viewer = await t.createToken('viewer', 'rotation-viewer');
}, 30_000);

afterAll(async () => {
  await t?.stop();
});

const rotations = async (event: string): Promise<number> => {
  const text = await (await t.raw('GET', '/metrics')).text();
  const line = text
    .split('\n')
    .find((candidate) => candidate.startsWith(`edgeloop_device_credential_rotations_total{event="${event}"} `));
  return line === undefined ? 0 : Number(line.split(' ')[1]);
};

/** How an MQTT login with this secret ends: 'accepted', or the CONNACK refusal's code. */
async function mqttLogin(id: string, password: string): Promise<'accepted' | number> {
  try {
    const client = await mqtt.connectAsync(t.started.mqttUrl, {
      clientId: id,
      username: id,
      password,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    await client.endAsync();
    return 'accepted';
  } catch (error) {
    return (error as { code?: number }).code ?? -1;
  }
}

/** How an HTTP Basic request with this secret ends: 401 refused; 404 (no such model) authenticated. */
async function httpLogin(id: string, password: string): Promise<number> {
  const answer = await t.raw('GET', '/api/v1/models/none/1.0.0/file', {
    token: null,
    headers: { authorization: basicAuth(id, password) },
  });
  return answer.status;
}

type AgentMode = 'apply' | 'refuse' | 'silent';

/**
 * A live device that answers rotate-credentials as the agent does: `apply` ends its session, logs
 * in with the new secret and answers ok on the new session; `refuse` answers failed; `silent` never
 * answers. Other commands answer ok.
 */
async function liveAgent(id: string, password: string, mode: AgentMode = 'apply') {
  const bootId = newBootId();
  let seq = 0;
  let current: { client: MqttClient; password: string };
  const received: Command[] = [];

  const reply = (client: MqttClient, body: CommandAnswer & { readonly requestId: string }) => {
    seq += 1;
    const payload = encode('reply', { ...body, msgId: messageId(bootId, seq), bootId, seq, ts: Date.now() } as never);
    return client.publishAsync(topicFor(id, 'reply'), payload, { qos: 1 });
  };

  const login = async (secret: string) => {
    const client = await t.connect(id, secret);
    client.on('message', (_topic, payload) => {
      const decoded = decode('cmd', payload);
      if (!decoded.ok) return;
      const command = decoded.value;
      received.push(command);
      void answer(client, command).catch(() => undefined);
    });
    await client.subscribeAsync(topicFor(id, 'cmd'), { qos: 1 });
    current = { client, password: secret };
  };

  const answer = async (client: MqttClient, command: Command) => {
    if (command.name !== ROTATE_CREDENTIALS_COMMAND) {
      await reply(client, { requestId: command.requestId, ok: true, data: {} });
      return;
    }
    if (mode === 'silent') return;
    if (mode === 'refuse') {
      await reply(client, {
        requestId: command.requestId,
        ok: false,
        error: { code: 'failed', message: 'no passwordFile' },
      });
      return;
    }
    const args = RotateCredentialsArgs.parse(command.args);
    await client.endAsync();
    await login(args.password);
    await reply(current.client, { requestId: command.requestId, ok: true, data: { reconnected: true } });
  };

  await login(password);
  return {
    get password() {
      return current.password;
    },
    received,
    close: () => current.client.endAsync(true),
  };
}

describe('credential rotation of a connected device', () => {
  it('delivers the new secret, and once the device logs in with it the old one fails on MQTT and HTTP', async () => {
    const enrolled = await t.enroll('rot-live');
    const old = enrolled.credentials.password;
    const agent = await liveAgent('rot-live', old);
    const started = await rotations('started');
    const promoted = await rotations('promoted');

    const rotated = await unwrap(operator.client.devices.rotateCredentials('rot-live'));
    expect(rotated).toMatchObject({ deviceId: 'rot-live', delivery: { state: 'applied' } });
    expect(rotated.password).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(rotated.password).not.toBe(old);
    // The default overlap is 24 h; the delivered secret carried the same deadline.
    expect(rotated.deadline).toBeGreaterThan(Date.now() + 86_400_000 - 60_000);
    const delivered = agent.received.find((command) => command.name === ROTATE_CREDENTIALS_COMMAND);
    expect(delivered?.args).toEqual({ password: rotated.password, deadline: rotated.deadline });
    expect(agent.password).toBe(rotated.password);

    // The agent's login with the new secret promoted it, long before the deadline.
    expect(await rotations('started')).toBe(started + 1);
    expect(await rotations('promoted')).toBe(promoted + 1);
    expect(await mqttLogin('rot-live', old)).toBe(4);
    expect(await httpLogin('rot-live', old)).toBe(401);
    expect(await httpLogin('rot-live', rotated.password)).toBe(404);
    // The device is still online on its new session, and answers commands there.
    const ping = await unwrap(operator.client.devices.command('rot-live', { name: 'ping', args: {} }));
    expect(ping.reply.ok).toBe(true);
    await agent.close();
  });

  it('says failed when the device refuses the secret, and the old one keeps working until the deadline', async () => {
    const enrolled = await t.enroll('rot-refuses');
    const old = enrolled.credentials.password;
    const agent = await liveAgent('rot-refuses', old, 'refuse');
    const rotated = await unwrap(operator.client.devices.rotateCredentials('rot-refuses', { overlapS: 600 }));
    expect(rotated.delivery).toEqual({ state: 'failed', message: 'failed: no passwordFile' });
    expect(await httpLogin('rot-refuses', old)).toBe(404);
    skewMs = 600_000;
    try {
      expect(await httpLogin('rot-refuses', old)).toBe(401);
    } finally {
      skewMs = 0;
    }
    await agent.close();
  });

  it('says timeout when the device does not answer, and the rotation stands', async () => {
    const enrolled = await t.enroll('rot-silent');
    const agent = await liveAgent('rot-silent', enrolled.credentials.password, 'silent');
    const rotated = await unwrap(operator.client.devices.rotateCredentials('rot-silent', { deliver: true }));
    expect(rotated.delivery.state).toBe('timeout');
    expect(await httpLogin('rot-silent', rotated.password)).toBe(404);
    await agent.close();
  });

  it('marks the answer no-store, and audits the rotation with its actor and delivery but never the secret', async () => {
    const enrolled = await t.enroll('rot-audit');
    const agent = await liveAgent('rot-audit', enrolled.credentials.password);
    const answer = await t.raw('POST', '/api/v1/devices/rot-audit/credentials/rotate', {
      token: operator.secret,
      body: { overlapS: 60 },
    });
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const { password } = (await answer.json()) as { password: string };
    const entries = await unwrap(t.client.audit.list({ limit: 500 }));
    const entry = entries.items.find(
      (item) => item.action === 'POST /api/v1/devices/:id/credentials/rotate' && item.target === 'rot-audit',
    );
    expect(entry).toMatchObject({
      actor: { id: operator.id, role: 'operator' },
      status: 200,
      summary: { body: { overlapS: 60 }, result: { id: 'rot-audit', status: 'applied' } },
    });
    expect(JSON.stringify(entries)).not.toContain(password);
    expect(JSON.stringify(entries)).not.toContain(enrolled.credentials.password);
    await agent.close();
  });
});

describe('credential rotation of an offline device', () => {
  it('keeps the old secret working until the deadline and takes the new one at once', async () => {
    const enrolled = await t.enroll('rot-offline');
    const old = enrolled.credentials.password;
    const rotated = await unwrap(
      operator.client.devices.rotateCredentials('rot-offline', { overlapS: 3600, deliver: false }),
    );
    expect(rotated.delivery).toEqual({ state: 'not-sent' });
    expect(rotated.deadline).toBeGreaterThanOrEqual(Date.now() + 3_600_000 - 60_000);
    expect(await httpLogin('rot-offline', old)).toBe(404);
    expect(await mqttLogin('rot-offline', old)).toBe('accepted');
    expect(await httpLogin('rot-offline', old)).toBe(404);

    skewMs = 3_600_000;
    try {
      const expired = await rotations('expired_secret_refused');
      expect(await mqttLogin('rot-offline', old)).toBe(4);
      expect(await httpLogin('rot-offline', old)).toBe(401);
      expect(await rotations('expired_secret_refused')).toBe(expired + 2);
      expect(await mqttLogin('rot-offline', rotated.password)).toBe('accepted');
      expect(await httpLogin('rot-offline', rotated.password)).toBe(404);
    } finally {
      skewMs = 0;
    }
    // Promoted at that login: the old secret stays refused with the clock back.
    expect(await httpLogin('rot-offline', old)).toBe(401);
  });

  it('with overlap 0 refuses the old secret at once', async () => {
    const enrolled = await t.enroll('rot-zero');
    const old = enrolled.credentials.password;
    const rotated = await unwrap(operator.client.devices.rotateCredentials('rot-zero', { overlapS: 0 }));
    expect(rotated.delivery.state).toBe('not-sent');
    expect(await mqttLogin('rot-zero', old)).toBe(4);
    expect(await httpLogin('rot-zero', old)).toBe(401);
    expect(await mqttLogin('rot-zero', rotated.password)).toBe('accepted');
  });

  it('answers 409 for deliver true and rotates nothing', async () => {
    const enrolled = await t.enroll('rot-insist');
    const old = enrolled.credentials.password;
    const started = await rotations('started');
    const refused = await operator.client.devices.rotateCredentials('rot-insist', { deliver: true, overlapS: 0 });
    expect(refused.ok).toBe(false);
    if (!refused.ok) {
      expect(refused.error.status).toBe(409);
      expect(refused.error.message).toMatch(/not connected: nothing was rotated/);
    }
    expect(await rotations('started')).toBe(started);
    expect(await t.store.credentials.get('rot-insist')).toMatchObject({ secretHashNext: null });
    expect(await httpLogin('rot-insist', old)).toBe(404);
  });
});

describe('the rotation route', () => {
  it('replays the same secret for a repeated Idempotency-Key and rotates once', async () => {
    const enrolled = await t.enroll('rot-idem');
    const started = await rotations('started');
    const send = () =>
      t.raw('POST', '/api/v1/devices/rot-idem/credentials/rotate', {
        token: operator.secret,
        body: { deliver: false },
        headers: { 'Idempotency-Key': 'rotate-rot-idem-1' },
      });
    const first = await send();
    const second = await send();
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    const one = (await first.json()) as { password: string };
    const two = (await second.json()) as { password: string };
    expect(two.password).toBe(one.password);
    expect(await rotations('started')).toBe(started + 1);
    // The one secret both answers hold is the pending one: it works, and the old one still does.
    expect(await httpLogin('rot-idem', enrolled.credentials.password)).toBe(404);
    expect(await httpLogin('rot-idem', one.password)).toBe(404);
    // The same key with another body is refused.
    const other = await t.raw('POST', '/api/v1/devices/rot-idem/credentials/rotate', {
      token: operator.secret,
      body: { deliver: false, overlapS: 5 },
      headers: { 'Idempotency-Key': 'rotate-rot-idem-1' },
    });
    expect(other.status).toBe(422);
  });

  it('answers 403 to a viewer, 401 without a token and 404 for an unknown device, rotating nothing', async () => {
    const enrolled = await t.enroll('rot-guarded');
    const started = await rotations('started');
    const denied = await viewer.client.devices.rotateCredentials('rot-guarded', { deliver: false });
    expect(denied.ok ? 200 : denied.error.status).toBe(403);
    const anonymous = await t.raw('POST', '/api/v1/devices/rot-guarded/credentials/rotate', { token: null, body: {} });
    expect(anonymous.status).toBe(401);
    const unknown = await operator.client.devices.rotateCredentials('rot-nobody', { deliver: false });
    expect(unknown.ok ? 200 : unknown.error.status).toBe(404);
    const invalid = await t.raw('POST', '/api/v1/devices/rot-guarded/credentials/rotate', {
      token: operator.secret,
      body: { overlapS: -1 },
    });
    expect(invalid.status).toBe(422);
    expect(await rotations('started')).toBe(started);
    expect(await httpLogin('rot-guarded', enrolled.credentials.password)).toBe(404);
  });

  it('refuses rotate-credentials through the generic command route', async () => {
    const enrolled = await t.enroll('rot-generic');
    const agent = await liveAgent('rot-generic', enrolled.credentials.password);
    const sent = await operator.client.devices.command('rot-generic', {
      name: ROTATE_CREDENTIALS_COMMAND,
      args: { password: 'x'.repeat(43) },
    });
    expect(sent.ok).toBe(false);
    if (!sent.ok) expect(sent.error.status).toBe(422);
    expect(agent.received.some((command) => command.name === ROTATE_CREDENTIALS_COMMAND)).toBe(false);
    await agent.close();
  });
});
