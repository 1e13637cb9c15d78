/** One log call: a message, or structured fields and a message. pino's methods fit it. */
export interface LogFn {
  (msg: string): void;
  (obj: object, msg?: string): void;
}

/**
 * The slice of a pino logger the agent uses. The simulator passes `silentLogger` (or a shared
 * pino child) so thousands of devices do not each carry a logger.
 */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  child(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => {};

export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger,
};

/** One line a recording logger kept: its level, the merged bindings and fields, the message. */
export type LogLine = {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly fields: object;
  readonly msg: string;
};

/**
 * A logger that keeps every line in memory (`lines`, shared by its children): tests assert what
 * an operator would read without capturing stdout.
 */
export function createRecordingLogger(lines: LogLine[] = [], bindings: object = {}): Logger & { lines: LogLine[] } {
  const at =
    (level: LogLine['level']): LogFn =>
    (first: string | object, msg?: string) => {
      if (typeof first === 'string') lines.push({ level, fields: { ...bindings }, msg: first });
      else lines.push({ level, fields: { ...bindings, ...first }, msg: msg ?? '' });
    };
  return {
    lines,
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (more) => createRecordingLogger(lines, { ...bindings, ...more }),
  };
}
