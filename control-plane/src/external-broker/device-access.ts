import type { DeviceAccess } from '../fleet.ts';
import type { DynsecAdmin } from './dynsec.ts';

/*
 * The fleet's DeviceAccess on Mosquitto's dynamic security: enrollment provisions the device's
 * client and role with the secret generated for it (the control plane keeps only its hash),
 * revocation deletes them (Mosquitto disconnects a deleted client at once), a rotation replaces the
 * password. With `--broker-auth http-hooks` the broker asks the control plane instead and the
 * fleet gets NO_DEVICE_ACCESS.
 */
export function dynsecDeviceAccess(
  admin: Pick<DynsecAdmin, 'provisionDevice' | 'revokeDevice' | 'setClientPassword'>,
): DeviceAccess {
  return {
    provision: (deviceId, password) => admin.provisionDevice(deviceId, password),
    revoke: (deviceId) => admin.revokeDevice(deviceId),
    setPassword: (deviceId, password) => admin.setClientPassword(deviceId, password),
  };
}
