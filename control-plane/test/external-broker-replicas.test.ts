import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serviceGate } from '../../test-services.ts';
import { eventually, SYSTEM, startTestControlPlane, type TestControlPlane } from './harness.ts';
import { type DynsecMosquitto, mosquittoMissing, startDynsecMosquitto } from './mosquitto-dynsec.ts';
import { scratchDatabase } from './postgres-service.ts';

const postgres = serviceGate('postgres');

/*
 * Two control-plane replicas on one PostgreSQL database (a scratch one) and one Mosquitto 2 with
 * dynamic security (issue 11 §3): the shared subscription splits the fleet's messages between
 * them, so a device enrolled on replica 1 has messages land on replica 2 too, and the reply to a
 * command sent through replica 1 may be stored by replica 2. Nothing is lost either way.
 */

const missing = mosquittoMissing();
if (missing && process.env.CI === 'true') throw new Error(`external broker replicas suite: ${missing}`);

/** A counter's value on one replica's /metrics (the admin token is replica 1's), 0 when absent. */
async function metric(t: TestControlPlane, token: string, name: string, labels: string): Promise<number> {
  const response = await t.raw('GET', '/metrics', { token });
  expect(response.status).toBe(200);
  const text = await response.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe.skipIf(missing !== null || !postgres.run)('two replicas on one Mosquitto and one PostgreSQL', () => {
  const database = scratchDatabase('edgeloop_ext_replicas');
  let broker: DynsecMosquitto;
  let one: TestControlPlane;
  let two: TestControlPlane;

  beforeAll(async () => {
    await database.create();
    broker = await startDynsecMosquitto();
    const external = {
      brokerUrl: broker.url,
      brokerUsername: broker.admin.username,
      brokerPassword: broker.admin.password,
      databaseUrl: database.url,
    };
    one = await startTestControlPlane({ ...external, replicaId: 'replica-1' });
    // The pepper (hashes of tokens and device secrets) is shared through the data dir, as in event-relay.test.ts.
    two = await startTestControlPlane({
      ...external,
      replicaId: 'replica-2',
      dataDir: one.dataDir,
      adminToken: one.adminToken,
    });
  }, 60_000);

  afterAll(async () => {
    await two?.stop();
    await one?.stop();
    await broker?.stop();
    await database.drop();
  });

  it('stores every message of a device enrolled on replica 1, whichever replica receives it', async () => {
    const d = await one.device('rep-cam-1');
    await d.send('status', { state: 'online', reason: 'birth', keepaliveS: 30 });
    const sent = 40;
    for (let i = 0; i < sent; i++) await d.send('telemetry', { intervalS: 10, system: SYSTEM });
    await eventually(async () => (await one.store.messages.count('rep-cam-1')) === sent + 1, 10_000);
    const onOne = await metric(one, one.adminToken, 'edgeloop_ingest_accepted_total', '{channel="telemetry"}');
    const onTwo = await metric(two, one.adminToken, 'edgeloop_ingest_accepted_total', '{channel="telemetry"}');
    // Both took a share, and between them every message once.
    expect(onOne).toBeGreaterThan(0);
    expect(onTwo).toBeGreaterThan(0);
    expect(onOne + onTwo).toBe(sent);
    expect(two.cp.internals.ingest.knows('rep-cam-1')).toBe(true);
  });

  it('answers commands sent through replica 1 when replica 2 stores the replies', async () => {
    const d = await one.device('rep-cmd-cam');
    await d.answerCommands((command) => ({ ok: true, data: { n: command.args.n ?? null } }));
    await d.send('status', { state: 'online', reason: 'birth', keepaliveS: 30 });
    // Online on replica 1 whichever replica stored the birth (the event relay).
    await eventually(() => one.cp.internals.broker.isConnected('rep-cmd-cam') || null, 10_000);
    const before = await metric(two, one.adminToken, 'edgeloop_ingest_accepted_total', '{channel="reply"}');
    const commands = 8;
    for (let n = 0; n < commands; n++) {
      const sent = await one.client.devices.command('rep-cmd-cam', { name: 'ping', args: { n }, timeoutMs: 5_000 });
      expect(sent.ok && sent.value.reply).toMatchObject({ ok: true, data: { n } });
    }
    await eventually(async () => {
      const stored = await one.client.devices.messages('rep-cmd-cam', { channel: 'reply', limit: 50 });
      return stored.ok && stored.value.items.length === commands;
    }, 10_000);
    // Some of those replies were stored by replica 2, and still answered replica 1's requests.
    expect(
      (await metric(two, one.adminToken, 'edgeloop_ingest_accepted_total', '{channel="reply"}')) - before,
    ).toBeGreaterThan(0);
  });
});
