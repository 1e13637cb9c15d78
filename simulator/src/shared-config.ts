import type { AgentConfig } from '@edgeloop/agent';

/*
 * Thousands of simulated devices parse nearly the same agent config: only the id, the password
 * and the username derived from the id differ. The sections that are equal (telemetry, outbox,
 * hardware, models, the reconnect backoff) are kept once and shared, frozen, so a device that
 * tried to change a shared section would fail loudly instead of changing its neighbours.
 */

type Sections = Pick<AgentConfig, 'telemetry' | 'outbox' | 'hardware' | 'models'>;

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Returns an equal value seen before (by JSON), or keeps this one (at most `limit` distinct ones). */
export function createInterner(limit = 256): <T>(value: T) => T {
  const seen = new Map<string, unknown>();
  return <T>(value: T): T => {
    const key = JSON.stringify(value);
    const found = seen.get(key);
    if (found !== undefined) return found as T;
    if (seen.size >= limit) return value;
    const kept = deepFreeze(value);
    seen.set(key, kept);
    return kept;
  };
}

/** The config with its device-independent sections replaced by shared, frozen equal copies. */
export function shareConfigSections(config: AgentConfig, intern: <T>(value: T) => T): AgentConfig {
  const shared: Sections = {
    telemetry: intern(config.telemetry),
    outbox: intern(config.outbox),
    hardware: intern(config.hardware),
    models: intern(config.models),
  };
  return { ...config, ...shared, mqtt: { ...config.mqtt, reconnect: intern(config.mqtt.reconnect) } };
}
