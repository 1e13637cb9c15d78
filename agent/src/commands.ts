import {
  COMMAND_ARGS,
  type Command,
  describeIssues,
  type JsonObject,
  type JsonValue,
  type ReplyErrorCode,
} from '@edgeloop/protocol';
import type { z } from 'zod';
import { type Clock, systemClock } from './clock.ts';
import { type Logger, silentLogger } from './logger.ts';
import type { Publisher } from './publisher.ts';

/*
 * Commands: a handler table keyed by command name (zigbee2mqtt style). Every command gets exactly
 * one reply on the reply topic (through the outbox control lane):
 *   unknown name          -> error `unknown_command`
 *   args fail the schema  -> error `invalid_args`
 *   expiresAt < now       -> error `expired` (not run)
 *   handler throws        -> error `failed` with the message (a CommandError's code is kept)
 *   otherwise             -> ok with the handler's data
 */

export type CommandContext = {
  readonly requestId: string;
  readonly issuedAt?: number;
  /** Aborted when the command table stops. */
  readonly signal: AbortSignal;
};

export type CommandHandler<A = JsonObject> = {
  /** Schema of the args; the handler receives the parsed value. */
  readonly args?: z.ZodType<A>;
  run(args: A, context: CommandContext): JsonValue | undefined | Promise<JsonValue | undefined>;
};

/** Thrown by a handler to answer with a specific error code (e.g. `busy`). */
export class CommandError extends Error {
  readonly code: ReplyErrorCode;
  constructor(code: ReplyErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandError';
    this.code = code;
  }
}

export type CommandStats = {
  readonly received: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly byCode: Readonly<Partial<Record<ReplyErrorCode, number>>>;
};

export interface Commands {
  /** Adds (or replaces) the handler of a command name. */
  register<A>(name: string, handler: CommandHandler<A>): void;
  /** Runs one command and publishes its reply. Never rejects. */
  handle(command: Command): Promise<void>;
  /** Answers a cmd whose body was invalid but whose requestId could be read. */
  rejectInvalid(requestId: string, reason: string): void;
  names(): string[];
  stats(): CommandStats;
  stop(): void;
}

export type CommandsDeps = {
  readonly publisher: Publisher;
  readonly clock?: Clock;
  readonly logger?: Logger;
};

const MAX_ERROR_MESSAGE = 2048;

export function createCommands(deps: CommandsDeps): Commands {
  return new CommandTable(deps);
}

class CommandTable implements Commands {
  readonly #publisher: Publisher;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #handlers = new Map<string, CommandHandler<unknown>>();
  /** Created on first use: most simulated devices never run a command. */
  #controller: AbortController | null = null;
  #received = 0;
  #succeeded = 0;
  #failed = 0;
  readonly #byCode: Partial<Record<ReplyErrorCode, number>> = {};

  constructor(deps: CommandsDeps) {
    this.#publisher = deps.publisher;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.logger ? deps.logger.child({ component: 'commands' }) : silentLogger;
  }

  #signal(): AbortSignal {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }

  #replyError(requestId: string, code: ReplyErrorCode, message: string): void {
    this.#failed += 1;
    this.#byCode[code] = (this.#byCode[code] ?? 0) + 1;
    const result = this.#publisher.publish('reply', {
      requestId,
      ok: false,
      error: { code, message: message.slice(0, MAX_ERROR_MESSAGE) },
    });
    if (!result.ok) this.#log.error({ error: result.error, requestId }, 'reply not published');
  }

  #replyOk(requestId: string, data: JsonValue | undefined): void {
    const body = data === undefined ? { requestId, ok: true as const } : { requestId, ok: true as const, data };
    const result = this.#publisher.publish('reply', body);
    if (result.ok) {
      this.#succeeded += 1;
    } else {
      // The handler's data did not fit the schema: say so rather than stay silent.
      this.#replyError(requestId, 'failed', `reply data rejected: ${result.error.message}`);
    }
  }

  register<A>(name: string, handler: CommandHandler<A>): void {
    this.#handlers.set(name, handler as CommandHandler<unknown>);
  }

  async handle(command: Command): Promise<void> {
    this.#received += 1;
    const { requestId } = command;
    if (command.expiresAt !== undefined && command.expiresAt < this.#clock.now()) {
      this.#replyError(requestId, 'expired', `command expired at ${new Date(command.expiresAt).toISOString()}`);
      return;
    }
    const handler = this.#handlers.get(command.name);
    if (!handler) {
      this.#replyError(requestId, 'unknown_command', `unknown command "${command.name}"`);
      return;
    }
    let args: unknown = command.args;
    if (handler.args) {
      const parsed = handler.args.safeParse(command.args);
      if (!parsed.success) {
        this.#replyError(requestId, 'invalid_args', describeIssues(parsed.error.issues));
        return;
      }
      args = parsed.data;
    }
    try {
      const signal = this.#signal();
      const context: CommandContext =
        command.issuedAt === undefined ? { requestId, signal } : { requestId, issuedAt: command.issuedAt, signal };
      const data = await handler.run(args, context);
      this.#replyOk(requestId, data);
    } catch (error) {
      const code = error instanceof CommandError ? error.code : 'failed';
      this.#replyError(requestId, code, error instanceof Error ? error.message : String(error));
    }
  }

  rejectInvalid(requestId: string, reason: string): void {
    this.#received += 1;
    this.#replyError(requestId, 'invalid_args', `invalid command: ${reason}`);
  }

  names(): string[] {
    return [...this.#handlers.keys()].sort();
  }

  stats(): CommandStats {
    return { received: this.#received, succeeded: this.#succeeded, failed: this.#failed, byCode: { ...this.#byCode } };
  }

  stop(): void {
    this.#signal();
    this.#controller?.abort();
  }
}

export type BuiltinCommandDeps = {
  readonly bootId: string;
  readonly clock: Clock;
  /** When the agent started (epoch ms), for uptime. */
  readonly startedAt: number;
  readonly setTelemetryIntervalS: (seconds: number) => void;
  readonly getTelemetryIntervalS: () => number;
  /** Re-reads the config and applies what it can; returns what changed (or throws). */
  readonly reloadConfig: () => Promise<JsonObject> | JsonObject;
};

/** The commands every agent answers: ping, reload-config, set-telemetry-interval. */
export function registerBuiltinCommands(commands: Commands, deps: BuiltinCommandDeps): void {
  commands.register('ping', {
    args: COMMAND_ARGS.ping,
    run() {
      const now = deps.clock.now();
      return { pong: now, bootId: deps.bootId, uptimeS: Math.max(0, (now - deps.startedAt) / 1000) };
    },
  });
  commands.register('reload-config', {
    args: COMMAND_ARGS['reload-config'],
    run() {
      return deps.reloadConfig();
    },
  });
  commands.register('set-telemetry-interval', {
    args: COMMAND_ARGS['set-telemetry-interval'],
    run(args) {
      const previousS = deps.getTelemetryIntervalS();
      deps.setTelemetryIntervalS(args.seconds);
      return { previousS, intervalS: deps.getTelemetryIntervalS() };
    },
  });
}
