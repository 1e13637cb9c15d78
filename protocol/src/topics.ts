import { isDeviceId } from './device-id.ts';

/** Every topic of the fleet lives under this prefix; the version is part of the topic. */
export const TOPIC_PREFIX = 'fleet/v1/devices';

/** Channels a device publishes on. */
export const DEVICE_TO_CLOUD = ['status', 'telemetry', 'events', 'reported', 'reply'] as const;
/** Channels the control plane publishes on and a device subscribes to. */
export const CLOUD_TO_DEVICE = ['desired', 'cmd'] as const;
export const CHANNELS = [...DEVICE_TO_CLOUD, ...CLOUD_TO_DEVICE] as const;

export type DeviceToCloudChannel = (typeof DEVICE_TO_CLOUD)[number];
export type CloudToDeviceChannel = (typeof CLOUD_TO_DEVICE)[number];
export type Channel = (typeof CHANNELS)[number];

const channelSet: ReadonlySet<string> = new Set(CHANNELS);
const deviceToCloudSet: ReadonlySet<string> = new Set(DEVICE_TO_CLOUD);

export function isChannel(value: string): value is Channel {
  return channelSet.has(value);
}

export function isDeviceToCloud(channel: Channel): channel is DeviceToCloudChannel {
  return deviceToCloudSet.has(channel);
}

/** The topic of one device's channel. The caller guarantees a valid device id. */
export function topicFor(deviceId: string, channel: Channel): string {
  return `${TOPIC_PREFIX}/${deviceId}/${channel}`;
}

export type ParsedTopic = { readonly deviceId: string; readonly channel: Channel };

/**
 * The one parser of fleet topics. Returns null for anything that is not exactly
 * `fleet/v1/devices/{valid device id}/{known channel}`: wildcards, `$SYS`, extra or missing
 * levels and invalid ids all come back null. Access rules are written with it.
 */
export function parseTopic(topic: string): ParsedTopic | null {
  if (topic.length > 128 || !topic.startsWith(`${TOPIC_PREFIX}/`)) return null;
  const rest = topic.slice(TOPIC_PREFIX.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0 || rest.indexOf('/', slash + 1) !== -1) return null;
  const deviceId = rest.slice(0, slash);
  const channel = rest.slice(slash + 1);
  if (!isChannel(channel) || !isDeviceId(deviceId)) return null;
  return { deviceId, channel };
}

/**
 * The subscription filter a control plane uses to ingest one channel from every device. With a
 * share group (MQTT 5 shared subscriptions on an external broker) replicas split the ingest.
 */
export function fleetFilter(channel: Channel, shareGroup?: string): string {
  const filter = `${TOPIC_PREFIX}/+/${channel}`;
  return shareGroup ? `$share/${shareGroup}/${filter}` : filter;
}

/** Which fleet channel a concrete topic matched by `fleetFilter` belongs to, or null. */
export function channelOfTopic(topic: string): Channel | null {
  return parseTopic(topic)?.channel ?? null;
}
