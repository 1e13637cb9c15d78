import { decode, type Reply } from '@edgeloop/protocol';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CommandError, createCommands, registerBuiltinCommands } from './commands.ts';
import { createMemoryOutbox } from './outbox.ts';
import { createPublisher } from './publisher.ts';
import { createSequencer } from './sequencer.ts';

function setup(now = 10_000) {
  const clock = { now: () => now };
  const outbox = createMemoryOutbox({ maxBytes: 1 << 20 });
  const publisher = createPublisher({ sequencer: createSequencer({ clock, bootId: 'boot-commands' }), outbox });
  const commands = createCommands({ publisher, clock });
  const replies = (): Reply[] =>
    outbox.nextBatch(100).map((entry) => {
      outbox.ack(entry.msgId);
      expect(entry.channel).toBe('reply');
      const decoded = decode('reply', entry.payload);
      if (!decoded.ok) throw new Error(decoded.error.message);
      return decoded.value;
    });
  let intervalS = 10;
  registerBuiltinCommands(commands, {
    bootId: 'boot-commands',
    clock,
    startedAt: 4_000,
    setTelemetryIntervalS: (seconds) => {
      intervalS = seconds;
    },
    getTelemetryIntervalS: () => intervalS,
    reloadConfig: () => ({ changed: ['logLevel'] }),
  });
  return { commands, replies, interval: () => intervalS };
}

describe('commands', () => {
  it('answers ping with the time, boot id and uptime', async () => {
    const { commands, replies } = setup();
    await commands.handle({ requestId: 'r1', name: 'ping', args: {} });
    expect(replies()).toEqual([
      expect.objectContaining({
        requestId: 'r1',
        ok: true,
        data: { pong: 10_000, bootId: 'boot-commands', uptimeS: 6 },
      }),
    ]);
  });

  it('changes the telemetry interval and reports old and new values', async () => {
    const { commands, replies, interval } = setup();
    await commands.handle({ requestId: 'r2', name: 'set-telemetry-interval', args: { seconds: 2 } });
    expect(interval()).toBe(2);
    expect(replies()[0]).toMatchObject({ ok: true, data: { previousS: 10, intervalS: 2 } });
  });

  it('answers an unknown command with unknown_command', async () => {
    const { commands, replies } = setup();
    await commands.handle({ requestId: 'r3', name: 'format-disk', args: {} });
    expect(replies()[0]).toMatchObject({ ok: false, error: { code: 'unknown_command' } });
    expect(commands.stats().byCode).toEqual({ unknown_command: 1 });
  });

  it('answers bad arguments with invalid_args and does not run the handler', async () => {
    const { commands, replies, interval } = setup();
    await commands.handle({ requestId: 'r4', name: 'set-telemetry-interval', args: { seconds: 0 } });
    expect(replies()[0]).toMatchObject({ ok: false, error: { code: 'invalid_args' } });
    expect(interval()).toBe(10);
  });

  it('answers an expired command with expired and does not run it', async () => {
    const { commands, replies, interval } = setup();
    await commands.handle({ requestId: 'r5', name: 'set-telemetry-interval', args: { seconds: 3 }, expiresAt: 9_999 });
    expect(replies()[0]).toMatchObject({ ok: false, error: { code: 'expired' } });
    expect(interval()).toBe(10);
  });

  it('turns a throwing handler into a failed reply, keeping a CommandError code', async () => {
    const { commands, replies } = setup();
    commands.register('explode', { run: () => Promise.reject(new Error('boom')) });
    commands.register('busy-thing', {
      run: () => {
        throw new CommandError('busy', 'an update is running');
      },
    });
    await commands.handle({ requestId: 'r6', name: 'explode', args: {} });
    await commands.handle({ requestId: 'r7', name: 'busy-thing', args: {} });
    const [failed, busy] = replies();
    expect(failed).toMatchObject({ requestId: 'r6', ok: false, error: { code: 'failed', message: 'boom' } });
    expect(busy).toMatchObject({ requestId: 'r7', ok: false, error: { code: 'busy' } });
  });

  it('lets other modules register handlers with their own argument schema', async () => {
    const { commands, replies } = setup();
    commands.register('echo', { args: z.object({ text: z.string() }), run: (args) => ({ echoed: args.text }) });
    await commands.handle({ requestId: 'r8', name: 'echo', args: { text: 'hi' } });
    expect(replies()[0]).toMatchObject({ ok: true, data: { echoed: 'hi' } });
    expect(commands.names()).toEqual(['echo', 'ping', 'reload-config', 'set-telemetry-interval']);
  });

  it('answers a malformed command whose requestId was readable', () => {
    const { commands, replies } = setup();
    commands.rejectInvalid('r9', 'name: Required');
    expect(replies()[0]).toMatchObject({ requestId: 'r9', ok: false, error: { code: 'invalid_args' } });
  });
});
