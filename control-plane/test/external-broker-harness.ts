import { encode, messageId, topicFor } from '@edgeloop/protocol';
import type { MqttClient } from 'mqtt';
import { startTestControlPlane, type TestControlPlane } from './harness.ts';
import { type DynsecMosquitto, startDynsecMosquitto } from './mosquitto-dynsec.ts';

/*
 * What the external-broker suites share: a dynsec Mosquitto of the suite's own with a control
 * plane on it (--broker-url, logged in as the dynsec admin), and waiting for a client to be closed.
 */

/** A Mosquitto with dynamic security and a control plane joined to it as `replicaId`. */
export async function startOnDynsecMosquitto(
  replicaId: string,
): Promise<{ broker: DynsecMosquitto; t: TestControlPlane }> {
  const broker = await startDynsecMosquitto();
  try {
    const t = await startTestControlPlane({
      brokerUrl: broker.url,
      brokerUsername: broker.admin.username,
      brokerPassword: broker.admin.password,
      replicaId,
    });
    return { broker, t };
  } catch (error) {
    await broker.stop();
    throw error;
  }
}

/** Resolves once the client's connection is closed (at once when it is not connected). */
export const closed = (client: MqttClient): Promise<void> =>
  new Promise<void>((resolve) => {
    if (!client.connected) resolve();
    client.once('close', () => resolve());
  });

/** What an agent publishes first on every connect: status online/birth, seq 1 of its boot (QoS 1). */
export async function publishBirth(
  client: MqttClient,
  deviceId: string,
  bootId: string,
  options: { readonly retain?: boolean } = {},
): Promise<void> {
  const birth = encode('status', {
    msgId: messageId(bootId, 1),
    bootId,
    seq: 1,
    ts: Date.now(),
    state: 'online',
    reason: 'birth',
  });
  await client.publishAsync(topicFor(deviceId, 'status'), birth, { qos: 1, retain: options.retain ?? false });
}
