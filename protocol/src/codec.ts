import type { z } from 'zod';
import { Command, Desired, DeviceEvent, Reply, Reported, Status, Telemetry } from './messages.ts';
import { fail, ok, type Result } from './result.ts';
import type { Channel } from './topics.ts';

/** The schema of every channel's payload. */
export const CHANNEL_SCHEMAS = {
  status: Status,
  telemetry: Telemetry,
  events: DeviceEvent,
  reported: Reported,
  reply: Reply,
  desired: Desired,
  cmd: Command,
} as const satisfies Record<Channel, z.ZodType>;

export type MessageOf<C extends Channel> = z.infer<(typeof CHANNEL_SCHEMAS)[C]>;
/** What an encoder accepts: defaults may be left out. */
export type MessageInputOf<C extends Channel> = z.input<(typeof CHANNEL_SCHEMAS)[C]>;

/** Largest payload any channel accepts. Images and models travel over HTTP, never MQTT. */
export const MAX_PAYLOAD_BYTES = 256 * 1024;

export type DecodeErrorCode = 'payload_too_large' | 'invalid_utf8' | 'invalid_json' | 'invalid_schema';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes one network payload. Never throws, whatever the bytes: too large, not UTF-8, not JSON
 * and not matching the schema each come back as a distinct error code with a readable reason.
 */
export function decode<C extends Channel>(
  channel: C,
  payload: Uint8Array | string,
  maxBytes: number = MAX_PAYLOAD_BYTES,
): Result<MessageOf<C>, DecodeErrorCode> {
  const size = typeof payload === 'string' ? payload.length : payload.byteLength;
  if (size > maxBytes) {
    return fail('payload_too_large', `payload of ${size} bytes exceeds the limit of ${maxBytes} bytes`);
  }
  let text: string;
  if (typeof payload === 'string') {
    text = payload;
  } else {
    try {
      text = utf8.decode(payload);
    } catch {
      return fail('invalid_utf8', 'payload is not valid UTF-8');
    }
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return fail('invalid_json', `payload is not JSON: ${(error as Error).message}`);
  }
  const parsed = CHANNEL_SCHEMAS[channel].safeParse(json);
  if (!parsed.success) {
    return fail('invalid_schema', describeIssues(parsed.error.issues));
  }
  return ok(parsed.data as MessageOf<C>);
}

/** Validates and serialises a message for a channel; throws on a programming error. */
export function encode<C extends Channel>(channel: C, message: MessageInputOf<C>): string {
  return JSON.stringify(CHANNEL_SCHEMAS[channel].parse(message));
}

/** A one-line summary of zod issues: `path: message; path: message` (first five). */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  const parts = issues.slice(0, 5).map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(root)';
    return `${path}: ${issue.message}`;
  });
  if (issues.length > 5) parts.push(`and ${issues.length - 5} more`);
  return parts.join('; ');
}
