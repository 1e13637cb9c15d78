import {
  checkDeviceId,
  type Desired,
  type DeviceCertificate,
  type EnrollDeviceResponse,
  fail,
  type Labels,
  ok,
  type Reply,
  type Result,
  ROTATE_CREDENTIALS_COMMAND,
  type SetDesiredRequest,
} from '@edgeloop/protocol';
import type { CommandError, CommandRequest, FleetBroker } from './broker.ts';
import type { DeviceRecord, DeviceRepository, SamplePolicyRepository } from './db/repositories.ts';
import type { EventBus } from './events.ts';
import type { Clock } from './ingest.ts';
import { effectivePolicy, sameJson } from './samples/policy-selectors.ts';
import { generateSecret, type SecretHasher } from './secrets.ts';

/*
 * Fleet operations that span the database, the broker and the ingest writer's live state:
 * enrollment, revocation, labels, desired state and commands. The HTTP API calls these; the
 * rollout engine will set desired state through setDesired too.
 */

/** Where devices connect; filled in once the MQTT listener is bound. */
export type MqttEndpoint = { readonly host: string; readonly port: number; readonly url: string };

export type FleetDeps = {
  readonly devices: DeviceRepository;
  readonly hasher: SecretHasher;
  readonly bus: EventBus;
  readonly clock: Clock;
  readonly live: { addDevice(id: string, enrolledAt: number): void; removeDevice(id: string): void };
  readonly broker: Pick<FleetBroker, 'kick' | 'publishDesired' | 'sendCommand'>;
  readonly mqttEndpoint: () => MqttEndpoint;
  /** The broker's own record of device credentials (an external broker's); none for the embedded one. */
  readonly deviceAccess?: DeviceAccess;
  /**
   * Device certificates signed by the fleet CA, for enrollment with `auth: cert`, with the MQTT TLS
   * endpoint such a device connects to. Absent or failing: cert enrollment answers why.
   */
  readonly deviceCertificates?: {
    issue(deviceId: string): Promise<Result<DeviceCertificateGrant, 'cert_unavailable'>>;
  };
  /**
   * Sample policies by label selector: a device enrolled later, or whose labels change, gets the
   * policy of the most specific selector it matches in its desired state.
   */
  readonly samplePolicies?: Pick<SamplePolicyRepository, 'list'>;
};

/**
 * Device credentials held by the broker itself (Mosquitto's dynamic security): the embedded broker
 * and one that asks our HTTP hooks check the stored hash instead and need none of this. The plain
 * secret exists only at enrollment and rotation, so those are the moments it is handed over.
 */
export type DeviceAccess = {
  /** Gives an enrolled device its broker login with this password (replacing an earlier one). */
  provision(deviceId: string, password: string): Promise<void>;
  /** Takes the login away; the broker disconnects the device at once. */
  revoke(deviceId: string): Promise<void>;
  /** A rotation's new password replaces the old one on the broker (the device is disconnected). */
  setPassword(deviceId: string, password: string): Promise<void>;
};

/** For brokers that check credentials with the control plane (embedded, HTTP hooks). */
export const NO_DEVICE_ACCESS: DeviceAccess = {
  provision: () => Promise.resolve(),
  revoke: () => Promise.resolve(),
  setPassword: () => Promise.resolve(),
};

/** A certificate issued for one enrollment and where its device connects. */
export type DeviceCertificateGrant = { readonly certificate: DeviceCertificate; readonly mqtt: MqttEndpoint };

/** Desired-state fields the model registry / rollouts set (issue 4). */
export type DesiredChange = SetDesiredRequest & {
  readonly model?: Desired['model'];
  /** Set by the sample-policy selectors (samples/policies.ts); null clears the device's policy. */
  readonly samplePolicy?: Desired['samplePolicy'];
};

export type Fleet = {
  enroll(input: {
    id: unknown;
    labels: Labels;
    /** cert: also an X.509 identity (MQTT over TLS without the password); default secret. */
    auth?: 'secret' | 'cert';
  }): Promise<Result<EnrollDeviceResponse, 'invalid_device_id' | 'conflict' | 'cert_unavailable'>>;
  revoke(id: string): Promise<boolean>;
  patchLabels(id: string, patch: Readonly<Record<string, string | null>>): Promise<DeviceRecord | null>;
  /** Merges the change into the desired state, bumps its version, stores and publishes it (retained). */
  setDesired(id: string, change: DesiredChange): Promise<Desired | null>;
  /** Sends a command and waits for the reply; `signal` (the HTTP request's) stops the wait. */
  sendCommand(
    id: string,
    command: CommandRequest,
    timeoutMs: number,
    signal?: AbortSignal,
  ): Promise<Result<Reply, CommandError>>;
  /** Re-publishes every stored desired state (the broker forgets retained messages on restart). */
  republishDesired(): Promise<number>;
};

export function toDeviceView(record: DeviceRecord) {
  return {
    id: record.id,
    labels: record.labels,
    status: record.status,
    health: record.health,
    healthReasons: [...record.healthReasons],
    lastSeen: record.lastSeen,
    enrolledAt: record.enrolledAt,
    bootId: record.bootId,
    agentVersion: record.agentVersion,
  };
}

export function createFleet(deps: FleetDeps): Fleet {
  const { devices, hasher, bus, clock } = deps;
  const access = deps.deviceAccess ?? NO_DEVICE_ACCESS;
  const fleet: Fleet = {
    async enroll(input) {
      const checked = checkDeviceId(input.id);
      if (!checked.ok) return checked;
      const id = checked.value;
      // The certificate first: nothing is stored when it cannot be issued.
      let grant: DeviceCertificateGrant | null = null;
      if (input.auth === 'cert') {
        if (!deps.deviceCertificates) {
          return fail('cert_unavailable', 'certificate enrollment is not available on this control plane');
        }
        const issued = await deps.deviceCertificates.issue(id);
        if (!issued.ok) return issued;
        grant = issued.value;
      }
      // A cert device gets a password too: its HTTP calls (model downloads, sample uploads) use it.
      const secret = generateSecret();
      const enrolled = await devices.enroll({
        id,
        labels: input.labels,
        secretHash: hasher.hash(secret),
        now: clock.now(),
        ...(grant ? { authMethod: 'cert' as const, certFingerprint: grant.certificate.fingerprint } : {}),
      });
      if (!enrolled.ok) return enrolled;
      try {
        await access.provision(id, secret);
      } catch (error) {
        // A device the broker would refuse is not enrolled: the row goes again, the caller gets the error.
        await devices.revoke(id, clock.now());
        throw error;
      }
      deps.live.addDevice(id, enrolled.value.enrolledAt);
      await applySamplePolicy(id, enrolled.value.labels);
      bus.publish('device.enrolled', { deviceId: id, labels: { ...input.labels } });
      return ok({
        device: toDeviceView(enrolled.value),
        credentials: { clientId: id, username: id, password: secret },
        ...(grant ? { certificate: grant.certificate } : {}),
        mqtt: grant ? grant.mqtt : deps.mqttEndpoint(),
      });
    },

    async revoke(id) {
      const revoked = await devices.revoke(id, clock.now());
      if (!revoked) return false;
      // Forget the live state first: the kicked session's will is then refused, not ingested.
      deps.live.removeDevice(id);
      // The broker's login first (deleting it disconnects the device on Mosquitto), then any session left.
      await access.revoke(id);
      await deps.broker.kick(id);
      bus.publish('device.revoked', { deviceId: id });
      return true;
    },

    async patchLabels(id, patch) {
      const record = await devices.patchLabels(id, patch);
      if (record) await applySamplePolicy(id, record.labels);
      return record;
    },

    async setDesired(id, change) {
      const now = clock.now();
      const desired = await devices.updateDesired(id, (current) => {
        const next: Desired = { version: (current?.version ?? 0) + 1, issuedAt: now };
        const telemetryIntervalS = change.telemetryIntervalS ?? current?.telemetryIntervalS;
        const config = change.config ?? current?.config;
        const model = change.model !== undefined ? change.model : current?.model;
        const samplePolicy = change.samplePolicy !== undefined ? change.samplePolicy : current?.samplePolicy;
        if (telemetryIntervalS !== undefined) next.telemetryIntervalS = telemetryIntervalS;
        if (config !== undefined) next.config = config;
        if (model !== undefined) next.model = model;
        if (samplePolicy !== undefined) next.samplePolicy = samplePolicy;
        return next;
      });
      if (desired) await deps.broker.publishDesired(id, desired);
      return desired;
    },

    sendCommand(id, command, timeoutMs, signal) {
      const password = command.args?.password;
      if (command.name !== ROTATE_CREDENTIALS_COMMAND || typeof password !== 'string') {
        return deps.broker.sendCommand(id, command, timeoutMs, signal);
      }
      // A broker with its own copy of the secret (Mosquitto's dynsec: one password per client)
      // takes the new one once the command is with it, before the agent logs in again with it;
      // the change drops the session, which the agent is replacing anyway.
      return deps.broker.sendCommand(id, command, timeoutMs, signal, () => access.setPassword(id, password));
    },

    async republishDesired() {
      const all = await devices.listDesired();
      for (const { id, desired } of all) await deps.broker.publishDesired(id, desired);
      return all.length;
    },
  };

  /** Copies the device's effective selector policy into its desired state when it differs. */
  async function applySamplePolicy(id: string, labels: Labels): Promise<void> {
    if (!deps.samplePolicies) return;
    const records = await deps.samplePolicies.list();
    if (records.length === 0) return;
    const policy = effectivePolicy(records, labels);
    const current = (await devices.snapshots({ ids: [id] }))[0]?.desired?.samplePolicy;
    if (sameJson(policy, current ?? null) || (policy === null && current === undefined)) return;
    await fleet.setDesired(id, { samplePolicy: policy as Desired['samplePolicy'] });
  }

  return fleet;
}
