import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopicAccess } from '../src/external-broker/http-hooks.ts';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';

/*
 * The HTTP authentication and ACL hooks an external broker calls (EMQX's HTTP authenticator and
 * authorizer, issue 11 §3 b), on a real control plane through its HTTP API.
 */

describe('deviceTopicAccess', () => {
  it('allows a device its own device-to-cloud publishes and its own desired and cmd subscriptions only', () => {
    for (const channel of ['status', 'telemetry', 'events', 'reported', 'reply']) {
      expect(deviceTopicAccess('cam-1', `fleet/v1/devices/cam-1/${channel}`, 'publish')).toBe(true);
      expect(deviceTopicAccess('cam-1', `fleet/v1/devices/cam-1/${channel}`, 'subscribe')).toBe(false);
      expect(deviceTopicAccess('cam-1', `fleet/v1/devices/cam-2/${channel}`, 'publish')).toBe(false);
    }
    for (const channel of ['desired', 'cmd']) {
      expect(deviceTopicAccess('cam-1', `fleet/v1/devices/cam-1/${channel}`, 'subscribe')).toBe(true);
      expect(deviceTopicAccess('cam-1', `fleet/v1/devices/cam-1/${channel}`, 'publish')).toBe(false);
    }
    for (const filter of [
      '#',
      'fleet/v1/devices/+/cmd',
      'fleet/v1/devices/cam-1/#',
      '$SYS/#',
      'fleet/v1/devices/cam-1/cmd/x',
    ])
      expect(deviceTopicAccess('cam-1', filter, 'subscribe')).toBe(false);
  });
});

describe('broker hooks on a control plane', () => {
  const secret = 'broker-hook-secret-0123456789abcdef';
  let t: TestControlPlane;
  let off: TestControlPlane;
  let password: string;

  beforeAll(async () => {
    t = await startTestControlPlane({ brokerHookSecret: secret });
    off = await startTestControlPlane();
    password = (await t.enroll('cam-1')).credentials.password;
    await t.enroll('cam-2');
  });
  afterAll(async () => {
    await t?.stop();
    await off?.stop();
  });

  const hook = async (which: 'authenticate' | 'authorize', body: unknown, bearer: string | null = secret) => {
    const response = await t.raw('POST', `/api/v1/broker/${which}`, {
      token: null,
      body,
      ...(bearer === null ? {} : { headers: { authorization: `Bearer ${bearer}` } }),
    });
    return { status: response.status, body: (await response.json()) as { result?: string; error?: { code: string } } };
  };

  it('lets a device in with its secret and keeps out a wrong one, another client id and a revoked device', async () => {
    expect(await hook('authenticate', { username: 'cam-1', password, clientid: 'cam-1' })).toEqual({
      status: 200,
      body: { result: 'allow' },
    });
    expect((await hook('authenticate', { username: 'cam-1', password: 'not-it', clientid: 'cam-1' })).body.result).toBe(
      'deny',
    );
    expect((await hook('authenticate', { username: 'cam-1', password, clientid: 'cam-2' })).body.result).toBe('deny');
    expect((await hook('authenticate', { username: 'ghost', password, clientid: 'ghost' })).body.result).toBe('deny');
    // Not a device id (the control plane's own broker user): the broker asks its next source.
    expect((await hook('authenticate', { username: 'edgeloop cp', password: 'x', clientid: 'cp' })).body.result).toBe(
      'ignore',
    );
    expect((await t.raw('DELETE', '/api/v1/devices/cam-1')).status).toBeLessThan(300);
    expect((await hook('authenticate', { username: 'cam-1', password, clientid: 'cam-1' })).body.result).toBe('deny');
  });

  it('answers publish and subscribe checks with the embedded broker rules', async () => {
    const check = async (topic: string, action: 'publish' | 'subscribe', clientid = 'cam-2') =>
      (await hook('authorize', { username: 'cam-2', clientid, topic, action })).body.result;
    expect(await check('fleet/v1/devices/cam-2/telemetry', 'publish')).toBe('allow');
    expect(await check('fleet/v1/devices/cam-2/cmd', 'subscribe')).toBe('allow');
    expect(await check('fleet/v1/devices/cam-1/telemetry', 'publish')).toBe('deny');
    expect(await check('fleet/v1/devices/+/cmd', 'subscribe')).toBe('deny');
    expect(await check('fleet/v1/devices/cam-2/desired', 'publish')).toBe('deny');
    expect(await check('fleet/v1/devices/cam-2/telemetry', 'publish', 'cam-1')).toBe('deny');
    expect(
      (await hook('authorize', { username: 'edgeloop cp', clientid: 'cp', topic: '#', action: 'subscribe' })).body
        .result,
    ).toBe('ignore');
  });

  it('refuses callers without the hook secret, bad bodies with a reason, and has no hooks when unset', async () => {
    const body = { username: 'cam-2', password: 'x', clientid: 'cam-2' };
    expect((await hook('authenticate', body, null)).status).toBe(401);
    expect((await hook('authenticate', body, `${secret}x`)).status).toBe(401);
    expect((await hook('authenticate', body, 'short')).status).toBe(401);
    const bad = await hook('authorize', { username: 'cam-2', clientid: 'cam-2', topic: 't', action: 'retain' });
    expect(bad.status).toBe(422);
    expect(bad.body.error?.code).toBe('unprocessable');
    const metrics = await (await t.raw('GET', '/metrics')).text();
    expect(metrics).toMatch(/edgeloop_broker_hook_refused_total 3/);
    expect(metrics).toMatch(/edgeloop_broker_hook_answers_total\{hook="authorize",result="allow"\} 2/);
    const unset = await off.raw('POST', '/api/v1/broker/authenticate', {
      token: null,
      body,
      headers: { authorization: `Bearer ${secret}` },
    });
    expect(unset.status).toBe(404);
  });
});
