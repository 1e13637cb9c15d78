import type { Logger } from 'pino';
import type { CommandWaiters } from '../command-waiters.ts';
import type { Config } from '../config.ts';
import type { DeviceRepository } from '../db/repositories.ts';
import type { EventBus } from '../events.ts';
import { type DeviceAccess, type MqttEndpoint, NO_DEVICE_ACCESS } from '../fleet.ts';
import type { Clock, IngestWriter } from '../ingest.ts';
import type { MetricsRegistry } from '../metrics.ts';
import { dynsecDeviceAccess } from './device-access.ts';
import { createDynsecAdmin, type DynsecAdmin } from './dynsec.ts';
import { createExternalBroker, type ExternalBroker, SHARE_GROUP } from './external-broker.ts';

/*
 * The external broker as control-plane.ts starts it (--broker-url): the broker connections, and
 * with `--broker-auth dynsec` the dynamic security admin on the publishing connection (the
 * control plane's user is a dynsec admin there): it grants the control plane's own role before
 * anything is subscribed, then provisions, revokes and re-keys devices for the fleet.
 */

export type ExternalBrokerConnection = {
  readonly broker: ExternalBroker;
  readonly deviceAccess: DeviceAccess;
  /** Where devices connect: --broker-public-url, else --broker-url. */
  readonly endpoint: MqttEndpoint;
  readonly url: string;
  close(): Promise<void>;
};

export type OpenExternalBrokerDeps = {
  readonly config: Pick<Config, 'brokerPublicUrl' | 'brokerUsername' | 'brokerAuth'> & {
    readonly brokerUrl: string;
    readonly brokerPassword: string;
  };
  readonly replicaId: string;
  readonly ingest: Pick<IngestWriter, 'offer' | 'knows' | 'addDevice' | 'removeDevice'>;
  readonly devices: Pick<DeviceRepository, 'loadLiveState' | 'loadLiveStates'>;
  readonly bus: EventBus;
  readonly waiters: CommandWaiters;
  readonly metrics: MetricsRegistry;
  readonly logger: Logger;
  readonly clock: Clock;
};

/** host, port and URL of an mqtt:// or mqtts:// URL (the port defaults by scheme). */
export function brokerEndpoint(url: string): MqttEndpoint {
  const parsed = new URL(url);
  const port = Number(parsed.port || (parsed.protocol === 'mqtts:' ? 8883 : 1883));
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  // hostname keeps an IPv6 address's brackets.
  return { host, port, url: `${parsed.protocol}//${parsed.hostname}:${port}` };
}

export async function openExternalBroker(deps: OpenExternalBrokerDeps): Promise<ExternalBrokerConnection> {
  const { config, logger } = deps;
  let admin: DynsecAdmin | null = null;
  const broker = createExternalBroker({
    url: config.brokerUrl,
    username: config.brokerUsername,
    password: config.brokerPassword,
    replicaId: deps.replicaId,
    ingest: deps.ingest,
    lookupDevice: async (deviceId) => {
      const state = await deps.devices.loadLiveState(deviceId);
      return state ? { enrolledAt: state.enrolledAt } : null;
    },
    onlineDevices: async () =>
      (await deps.devices.loadLiveStates()).filter((state) => state.status === 'online').map((state) => state.id),
    bus: deps.bus,
    waiters: deps.waiters,
    metrics: deps.metrics,
    logger,
    clock: deps.clock,
    ...(config.brokerAuth === 'dynsec'
      ? {
          prepare: async (client) => {
            admin = await createDynsecAdmin({ client });
            await admin.grantControlPlane(config.brokerUsername, SHARE_GROUP);
          },
        }
      : {}),
  });
  await broker.start();
  const opened = admin as DynsecAdmin | null;
  logger.info(
    { url: config.brokerUrl, replicaId: deps.replicaId, auth: config.brokerAuth },
    'connected to the external broker',
  );
  return {
    broker,
    deviceAccess: opened ? dynsecDeviceAccess(opened) : NO_DEVICE_ACCESS,
    endpoint: brokerEndpoint(config.brokerPublicUrl ?? config.brokerUrl),
    url: config.brokerUrl,
    async close() {
      await opened?.close();
      await broker.close();
    },
  };
}
