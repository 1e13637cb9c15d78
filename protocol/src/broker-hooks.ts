import { z } from 'zod';

/*
 * The HTTP authentication and authorisation hooks an external MQTT broker calls for each device
 * (EMQX's HTTP authenticator and HTTP authorizer, or any broker that can POST the same JSON):
 *
 *   POST /api/v1/broker/authenticate  {username, password, clientid}        -> {result}
 *   POST /api/v1/broker/authorize     {username, clientid, topic, action}   -> {result}
 *
 * `result` is EMQX's: allow, deny, or ignore (not a device's name: the broker asks its next
 * source, e.g. its own user for the control plane).
 */

export const BrokerHookResult = z
  .enum(['allow', 'deny', 'ignore'])
  .describe('allow or deny; ignore: not a device, the broker asks its next authenticator or authorizer');
export type BrokerHookResult = z.infer<typeof BrokerHookResult>;

export const BrokerAuthenticateRequest = z
  .object({
    username: z.string().max(256).describe('The MQTT username: a device id'),
    password: z.string().max(1024).describe('The MQTT password: the device secret'),
    clientid: z.string().max(256).describe('The MQTT client id: must equal the username'),
  })
  .describe('What the broker knows of a connecting client (EMQX HTTP authenticator body)');
export type BrokerAuthenticateRequest = z.infer<typeof BrokerAuthenticateRequest>;

export const BrokerAuthorizeRequest = z
  .object({
    username: z.string().max(256).describe('The MQTT username: a device id'),
    clientid: z.string().max(256).describe('The MQTT client id: must equal the username'),
    topic: z.string().max(1024).describe('The topic published to, or the filter subscribed to'),
    action: z.enum(['publish', 'subscribe']).describe('What the client asks to do'),
  })
  .describe('One publish or subscribe a client asks for (EMQX HTTP authorizer body)');
export type BrokerAuthorizeRequest = z.infer<typeof BrokerAuthorizeRequest>;

export const BrokerHookResponse = z
  .object({ result: BrokerHookResult })
  .describe("The control plane's answer to the broker");
export type BrokerHookResponse = z.infer<typeof BrokerHookResponse>;
