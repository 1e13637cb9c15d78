import { randomBytes } from 'node:crypto';
import { CLOUD_TO_DEVICE, DEVICE_TO_CLOUD, isDeviceId, TOPIC_PREFIX, topicFor } from '@edgeloop/protocol';
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
  readonly acltype: 'publishClientSend' | 'publishClientReceive' | 'subscribeLiteral' | 'subscribePattern';
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

/** The role of the control plane's own broker user (every replica logs in as it). */
export const CONTROL_PLANE_ROLE = 'edgeloop-control-plane';

/**
 * What the control plane may do: read every device topic (its shared ingest subscription, the
 * reply subscription that resolves waiting commands on every replica) and publish desired state
 * and commands. Mosquitto checks a shared subscription with and without its `$share/<group>/`
 * prefix depending on the version, so both are granted.
 */
export function controlPlaneAcls(shareGroup: string): DynsecAcl[] {
  const every = `${TOPIC_PREFIX}/#`;
  return [
    { acltype: 'subscribePattern', topic: every, allow: true },
    { acltype: 'subscribePattern', topic: `$share/${shareGroup}/${every}`, allow: true },
    { acltype: 'publishClientReceive', topic: every, allow: true },
    ...CLOUD_TO_DEVICE.map((channel) => ({
      acltype: 'publishClientSend' as const,
      topic: `${TOPIC_PREFIX}/+/${channel}`,
      allow: true,
    })),
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
  /**
   * Replaces a provisioned device's password (a rotation): its next login needs the new one; a
   * session already connected stays.
   */
  setClientPassword(deviceId: string, password: string): Promise<void>;
  /**
   * Gives the broker user `username` (the control plane's own, a dynsec admin) the control plane's
   * role, creating the role or adding what it lacks; run at every start, idempotent.
   */
  grantControlPlane(username: string, shareGroup: string): Promise<void>;
  /** Stops listening for answers (the client is the caller's). */
  close(): Promise<void>;
};

export async function createDynsecAdmin(deps: DynsecAdminDeps): Promise<DynsecAdmin> {
  const { client } = deps;
  const timeoutMs = deps.timeoutMs ?? 5_000;
  type Answer = { readonly error: string | null; readonly data: unknown };
  const waiting = new Map<string, { resolve: (answers: Answer[]) => void; reject: (error: Error) => void }>();

  const onMessage = (topic: string, payload: Buffer) => {
    if (topic !== DYNSEC_RESPONSE_TOPIC) return;
    let body: { responses?: { command?: string; error?: string; data?: unknown; correlationData?: string }[] };
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
    entry.resolve(
      responses.map((r) => ({ error: typeof r.error === 'string' && r.error !== '' ? r.error : null, data: r.data })),
    );
  };
  client.on('message', onMessage);
  await client.subscribeAsync(DYNSEC_RESPONSE_TOPIC, { qos: 1 });

  const ask = (commands: readonly DynsecCommand[], waitMs = timeoutMs) => {
    const id = randomBytes(8).toString('hex');
    return new Promise<Answer[]>((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(
          new DynsecError(`no answer from the dynamic security plugin in ${waitMs} ms`, commands[0]?.command ?? ''),
        );
      }, waitMs);
      waiting.set(id, {
        resolve: (answers) => {
          clearTimeout(timer);
          resolve(answers);
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

  const send: DynsecAdmin['send'] = async (commands) => (await ask(commands)).map((answer) => answer.error);

  /** The roles of a dynsec client (getClient). */
  const rolesOf = async (username: string, waitMs = timeoutMs): Promise<string[]> => {
    const [answer] = await ask([{ command: 'getClient', username }], waitMs);
    if (!answer || answer.error !== null) throw new DynsecError(answer?.error ?? 'no answer', 'getClient');
    const roles = (answer.data as { client?: { roles?: { rolename?: unknown }[] } } | undefined)?.client?.roles ?? [];
    return roles.flatMap((role) => (typeof role.rolename === 'string' ? [role.rolename] : []));
  };

  /** Resolves once the client is connected (mqtt.js reconnects by itself), at most `waitMs` later. */
  const connected = async (waitMs: number) => {
    const deadline = Date.now() + waitMs;
    while (!client.connected) {
      if (Date.now() > deadline) throw new DynsecError('not reconnected after the role change', 'addClientRole');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
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
    async setClientPassword(deviceId, password) {
      if (!isDeviceId(deviceId)) throw new TypeError(`not a device id: ${deviceId}`);
      if (password.length < 16) throw new TypeError('a device password has at least 16 characters');
      const commands = [{ command: 'setClientPassword', username: deviceId, password }];
      check(commands, await send(commands), /^$/);
    },
    async grantControlPlane(username, shareGroup) {
      // An existing role is left as it is (an operator may have tuned it): changing a role's ACLs
      // makes Mosquitto disconnect every client holding it, the other replicas included.
      const created = [
        {
          command: 'createRole',
          rolename: CONTROL_PLANE_ROLE,
          textname: 'edgeloop control plane',
          acls: controlPlaneAcls(shareGroup),
        },
      ];
      check(created, await send(created), /already exists/i);
      if ((await rolesOf(username)).includes(CONTROL_PLANE_ROLE)) return;
      // Mosquitto disconnects a client whose roles change, this one too, so the answer may never
      // come: the grant is read back once mqtt.js has reconnected (and resubscribed), asking again
      // if that question is lost to the disconnect as well.
      await ask([{ command: 'addClientRole', username, rolename: CONTROL_PLANE_ROLE }], 2_000).catch(() => null);
      let roles: string[] | null = null;
      for (let attempt = 0; roles === null; attempt++) {
        await connected(15_000);
        roles = await rolesOf(username, 2_000).catch((error: unknown) => {
          if (attempt >= 3) throw error;
          return null;
        });
      }
      if (!roles.includes(CONTROL_PLANE_ROLE)) {
        throw new DynsecError(
          `the broker user ${username} did not get the role ${CONTROL_PLANE_ROLE}`,
          'addClientRole',
        );
      }
    },
    async close() {
      client.off('message', onMessage);
      for (const entry of waiting.values()) entry.reject(new DynsecError('closed', ''));
      waiting.clear();
      await client.unsubscribeAsync(DYNSEC_RESPONSE_TOPIC).catch(() => {});
    },
  };
}
