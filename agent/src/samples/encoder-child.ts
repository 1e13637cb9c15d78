import { readdirSync } from 'node:fs';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { writeDurably } from './durable-write.ts';
import type { EncodedSample, EncodeInput, EncodeOptions } from './encode.ts';

/*
 * The sample encoder child (encoder.ts starts it): lowers the CPU priority of every one of its
 * threads first (argv[2], a nice value), then answers its parent's requests over IPC, one reply
 * per request: encode a frame, or write a file durably (the spool's and the budget's writes, so
 * their fsyncs run at this priority too). It keeps no state and exits when its parent goes away.
 */

export type WriteRequest = {
  readonly id: number;
  readonly op: 'write';
  readonly temp: string;
  readonly file: string;
  readonly data: Uint8Array;
  readonly fsync: boolean;
};

export type EncodeRequest = {
  readonly id: number;
  readonly op: 'encode';
  readonly rgb: Uint8Array;
  readonly width: number;
  readonly height: number;
  readonly detections: EncodeInput['detections'];
  readonly options: EncodeOptions;
};

export type EncoderRequest = EncodeRequest | WriteRequest;

export type EncoderReply =
  | { readonly id: number; readonly ok: true; readonly op: 'write' }
  | {
      readonly id: number;
      readonly ok: true;
      readonly op: 'encode';
      readonly bytes: Uint8Array;
      readonly sample: Omit<EncodedSample, 'bytes'>;
    }
  | { readonly id: number; readonly ok: false; readonly error: string };

/**
 * Sets the nice value of every thread of this process. On Linux the nice value is per thread, and
 * a thread starts with the value of the thread that created it; threads made before this call (V8's
 * platform workers) are set one by one through /proc/self/task.
 */
export function lowerPriority(priority: number): void {
  try {
    os.setPriority(priority);
  } catch {
    // not permitted here: the encoder runs at the priority it has
  }
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return; // not Linux: os.setPriority above set the whole process
  }
  for (const tid of tasks) {
    try {
      os.setPriority(Number(tid), priority);
    } catch {
      // the thread ended meanwhile
    }
  }
}

function isWrite(message: unknown): message is WriteRequest {
  const m = message as Partial<WriteRequest> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.op === 'write' &&
    typeof m.id === 'number' &&
    typeof m.temp === 'string' &&
    typeof m.file === 'string' &&
    m.data instanceof Uint8Array &&
    typeof m.fsync === 'boolean'
  );
}

function isEncode(message: unknown): message is EncodeRequest {
  const m = message as Partial<EncodeRequest> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    m.op === 'encode' &&
    typeof m.id === 'number' &&
    m.rgb instanceof Uint8Array &&
    Number.isInteger(m.width) &&
    Number.isInteger(m.height) &&
    Array.isArray(m.detections) &&
    typeof m.options === 'object'
  );
}

async function main(): Promise<void> {
  const priority = Number(process.argv[2] ?? 19);
  lowerPriority(priority);
  const { redactAndEncode } = await import('./encode.ts');
  // A first encode starts the libuv and libvips threads (they inherit the priority); then every
  // thread is set once more.
  await redactAndEncode(
    { rgb: new Uint8Array(16 * 16 * 3), width: 16, height: 16, detections: [] },
    { jpegQuality: 80, maxWidth: undefined, redaction: { blackout: [], blurClasses: [] } },
  );
  lowerPriority(priority);
  process.on('disconnect', () => process.exit(0));
  process.on('message', (message: unknown) => {
    const id = typeof (message as { id?: unknown })?.id === 'number' ? (message as { id: number }).id : -1;
    if (isWrite(message)) {
      writeDurably(message.temp, message.file, message.data, message.fsync).then(
        () => process.send?.({ id, ok: true, op: 'write' } satisfies EncoderReply),
        (error: unknown) => process.send?.({ id, ok: false, error: (error as Error).message } satisfies EncoderReply),
      );
      return;
    }
    if (!isEncode(message)) {
      process.send?.({ id, ok: false, error: 'malformed encoder request' } satisfies EncoderReply);
      return;
    }
    const { rgb, width, height, detections, options } = message;
    if (width <= 0 || height <= 0 || rgb.length < width * height * 3) {
      process.send?.({ id, ok: false, error: `frame of ${rgb.length} bytes is not ${width}x${height} RGB` });
      return;
    }
    redactAndEncode({ rgb, width, height, detections }, options).then(
      (out) => {
        const { bytes, ...sample } = out;
        process.send?.({ id, ok: true, op: 'encode', bytes, sample } satisfies EncoderReply);
      },
      (error: unknown) => {
        process.send?.({ id, ok: false, error: (error as Error).message ?? String(error) } satisfies EncoderReply);
      },
    );
  });
  process.send?.({ ready: true });
}

// Only as the entry module of a forked child (never when imported, say by a test).
if (process.send && process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
