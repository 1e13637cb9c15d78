import { randomBytes } from 'node:crypto';
import { CLOUD_TO_DEVICE, DEVICE_TO_CLOUD, isDeviceId, topicFor } from '@edgeloop/protocol';
import type { MqttClient } from 'mqtt';

/*
 * Device credentials and access rules on an external Mosquitto 2 broker, through its dynamic
 * security plugin (mosquitto_dynamic_security.so, in Debian's mosquitto): the control plane, as
 * the plugin's admin client, sends commands on `$CONTROL/dynamic-security/v1` and reads the
 * answers on `.../response` (matched by correlationData).
 *
 * One device is one dynsec client (username and client id both the device id, so the broker
 * refuses any other client id for those credentials) with one role of its own,
 * `edgeloop-device-<id>`, that allows exactly what the embedded broker allows it: publish on its
 * own device-to-cloud topics, subscribe to its own desired and cmd topics; everything else falls
 * to the plugin's default, deny. Revocation deletes the client (the broker disconnects a deleted
 * client at once) and its role.
 *
 * Reading: https://mosquitto.org/documentation/dynamic-security/ (command names and fields).
 */

export const DYNSEC_TOPIC = '$CONTROL/dynamic-security/v1';
export const DYNSEC_RESPONSE_TOPIC = `${DYNSEC_TOPIC}/response`;

export type DynsecAcl = {
  readonly acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral';
  readonly topic: string;
  readonly allow: boolean;
  readonly priority?: number;
};

export type DynsecCommand = { readonly command: string } & Record<string, unknown>;

export class DynsecError extends Error {
  readonly code = 'dynsec_error';
  /** The command the plugin refused (or that got no answer). */
  readonly command: string;
  constructor(message: string, command: string) {
    super(message);
    this.name = 'DynsecError';
    this.command = command;
  }
}

/** The role name of a device's own role. */
export const deviceRoleName = (deviceId: string) => `edgeloop-device-${deviceId}`;

/** What a device may do, as dynsec ACLs: exactly its own topics. */
export function deviceAcls(deviceId: string): DynsecAcl[] {
  if (!isDeviceId(deviceId)) throw new TypeError(`not a device id: ${deviceId}`);
  return [
    ...DEVICE_TO_CLOUD.map((channel) => ({
      acltype: 'publishClientSend' as const,
      topic: topicFor(deviceId, channel),
      allow: true,
    })),
    ...CLOUD_TO_DEVICE.flatMap((channel) => [
      { acltype: 'subscribeLiteral' as const, topic: topicFor(deviceId, channel), allow: true },
      { acltype: 'publishClientReceive' as const, topic: topicFor(deviceId, channel), allow: true },
    ]),
  ];
}

/** The commands that give a device its credentials and role (replacing what it had). */
export function provisionCommands(deviceId: string, password: string): DynsecCommand[] {
  const rolename = deviceRoleName(deviceId);
  return [
    { command: 'createRole', rolename, textname: `edgeloop device ${deviceId}`, acls: deviceAcls(deviceId) },
    {
      command: 'createClient',
      username: deviceId,
      clientid: deviceId,
      password,
      textname: `edgeloop device ${deviceId}`,
      roles: [{ rolename }],
    },
  ];
}

export type DynsecAdminDeps = {
  /** Connected to the broker as the dynsec admin user (MQTT 5). */
  readonly client: MqttClient;
  readonly timeoutMs?: number;
};

export type DynsecAdmin = {
  /** Sends commands in one message; resolves with each one's error (null when it succeeded), in order. */
  send(commands: readonly DynsecCommand[]): Promise<(string | null)[]>;
  /** Gives a device credentials and its own role; a device provisioned before gets the new password and role. */
  provisionDevice(deviceId: string, password: string): Promise<void>;
  /** Deletes the device's client (disconnecting it) and its role; a device never provisioned is fine. */
  revokeDevice(deviceId: string): Promise<void>;
  /** Stops listening for answers (the client is the caller's). */
  close(): Promise<void>;
};

export async function createDynsecAdmin(deps: DynsecAdminDeps): Promise<DynsecAdmin> {
  const { client } = deps;
  const timeoutMs = deps.timeoutMs ?? 5_000;
  const waiting = new Map<string, { resolve: (errors: (string | null)[]) => void; reject: (error: Error) => void }>();

  const onMessage = (topic: string, payload: Buffer) => {
    if (topic !== DYNSEC_RESPONSE_TOPIC) return;
    let body: { responses?: { command?: string; error?: string; correlationData?: string }[] };
    try {
      body = JSON.parse(payload.toString('utf8')) as typeof body;
    } catch {
      return;
    }
    const responses = body.responses ?? [];
    const id = responses.find((r) => typeof r.correlationData === 'string')?.correlationData;
    if (!id) return;
    const entry = waiting.get(id);
    if (!entry) return;
    waiting.delete(id);
    entry.resolve(responses.map((r) => (typeof r.error === 'string' && r.error !== '' ? r.error : null)));
  };
  client.on('message', onMessage);
  await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });

  const send: DynsecAdmin['send'] = (commands) => {
    const id = randomBytes(8).toString('hex');
    return new Promise<(string | null)[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(
          new DynsecError(`no answer from the dynamic security plugin in ${timeoutMs} ms`, commands[0]?.command ?? ''),
        );
      }, timeoutMs);
      waiting.set(id, {
        resolve: (errors) => {
          clearTimeout(timer);
          resolve(errors);
        },
        reject,
      });
      const body = JSON.stringify({ commands: commands.map((c) => ({ ...c, correlationData: id })) });
      client.publish(DYNSEC_TOPIC, body, { qos: 1 }, (error) => {
        if (!error) return;
        clearTimeout(timer);
        waiting.delete(id);
        reject(new DynsecError(`could not send dynsec commands: ${error.message}`, commands[0]?.command ?? ''));
      });
    });
  };

  const check = (commands: readonly DynsecCommand[], errors: readonly (string | null)[], allowed: RegExp) => {
    errors.forEach((error, i) => {
      if (error !== null && !allowed.test(error)) throw new DynsecError(error, commands[i]?.command ?? '');
    });
  };

  const revokeDevice: DynsecAdmin['revokeDevice'] = async (deviceId) => {
    if (!isDeviceId(deviceId)) throw new TypeError(`not a device id: ${deviceId}`);
    const commands = [
      { command: 'deleteClient', username: deviceId },
      { command: 'deleteRole', rolename: deviceRoleName(deviceId) },
    ];
    check(commands, await send(commands), /not found/i);
  };

  return {
    send,
    async provisionDevice(deviceId, password) {
      if (password.length < 16) throw new TypeError('a device password has at least 16 characters');
      // Replacing is deleting first: a role or client left from an earlier enrollment must not keep its old rules.
      await revokeDevice(deviceId);
      const commands = provisionCommands(deviceId, password);
      check(commands, await send(commands), /^$/);
    },
    revokeDevice,
    async close() {
      client.off('message', onMessage);
      for (const entry of waiting.values()) entry.reject(new DynsecError('closed', ''));
      waiting.clear();
      await client.unsubscribeAsync(DYNSEC_RESPONSE_TOPIC).catch(() => {});
    },
  };
}
