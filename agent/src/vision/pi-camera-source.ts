import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Failure } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import { findOnPath, resolveFfmpegPath } from './ffmpeg-process.ts';
import type { FrameHandler, FrameSource, SourceStats } from './frame-source.ts';
import { sleepUnlessAborted } from './frame-source.ts';
import { decodeImage } from './image-decoder.ts';
import { describeError, isVisionError, VisionError } from './vision-error.ts';

/*
 * Raspberry Pi camera, one still at a time:
 *   backend 'rpicam'     `rpicam-still -n -t 1 -e jpg -o - --width W --height H` (current Raspberry Pi
 *                        OS; `libcamera-still` on Bullseye: set `command`)
 *   backend 'raspistill' node-raspistill (legacy camera stack), which runs `raspistill` from PATH
 * Every capture runs under a timeout: node-raspistill never settles when its binary is missing, and
 * a wedged camera stack can hang rpicam-still. The JPEG is decoded to RGB24 by ffmpeg.
 *
 * A failed capture is counted and retried at the next interval; `maxConsecutiveFailures` failures
 * in a row end the source with the last error. A missing program fails at once with
 * `camera_unavailable` (checked on `searchPath` before the first capture when it is given).
 * Starting a camera program per still costs ~0.5-1 s on a Pi: for video rates use the ffmpeg source
 * on the V4L2 device or on `rpicam-vid --codec mjpeg -o -` served over TCP/HTTP.
 */

export interface PiCameraSourceOptions {
  backend?: 'rpicam' | 'raspistill' | undefined;
  /** rpicam backend: the program (default `rpicam-still`). The raspistill backend always runs `raspistill`. */
  command?: string | undefined;
  width?: number | undefined;
  height?: number | undefined;
  /** Time between the starts of two captures (default 1000 ms). */
  intervalMs?: number | undefined;
  /** Camera settle time passed as `-t` (ms, default 1). */
  settleMs?: number | undefined;
  /** One capture (program run and JPEG read) may take this long (default 10 s). */
  captureTimeoutMs?: number | undefined;
  /** Give up after this many failed captures in a row (default 5). */
  maxConsecutiveFailures?: number | undefined;
  /** rpicam backend: extra arguments (e.g. ['--rotation', '180']). */
  extraArgs?: readonly string[] | undefined;
  /** PATH-style folders in which the camera program must exist (main.ts passes process.env.PATH). */
  searchPath?: string | undefined;
  ffmpegPath?: string | undefined;
}

export interface PiCameraSourceDeps {
  clock?: Clock;
  logger?: Logger;
}

type CaptureResult = { ok: true; jpeg: Buffer } | { ok: false; failure: Failure; fatal: boolean };

const MAX_JPEG_BYTES = 64 * 1024 * 1024;

/** Runs `command args`, collects stdout, and settles within `timeoutMs` whatever the child does. */
function captureWithProgram(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  signal: AbortSignal,
): Promise<CaptureResult> {
  return new Promise((resolve) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    let settled = false;
    const finish = (result: CaptureResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      finish({
        ok: false,
        failure: { code: 'source_timeout', message: `${command} gave no image within ${timeoutMs} ms` },
        fatal: false,
      });
    }, timeoutMs);
    const onAbort = (): void => {
      proc.kill('SIGKILL');
      finish({ ok: false, failure: { code: 'source_failed', message: 'aborted' }, fatal: false });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    proc.stdout?.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_JPEG_BYTES) {
        proc.kill('SIGKILL');
        finish({
          ok: false,
          failure: { code: 'decode_failed', message: `${command} wrote over 64 MiB` },
          fatal: false,
        });
        return;
      }
      chunks.push(chunk);
    });
    proc.stderr?.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4096);
    });
    proc.on('error', (error: NodeJS.ErrnoException) => {
      const missing = error.code === 'ENOENT';
      finish({
        ok: false,
        failure: {
          code: 'camera_unavailable',
          message: missing ? `${command} not found: install rpicam-apps or set the camera command` : error.message,
        },
        fatal: missing,
      });
    });
    proc.on('close', (code, sig) => {
      if (code === 0 && size > 0) {
        finish({ ok: true, jpeg: Buffer.concat(chunks, size) });
        return;
      }
      const lastLine =
        stderr
          .trim()
          .split(/\r?\n/)
          .filter((line) => line.trim())
          .pop() ?? '';
      const noCamera =
        /no cameras available|camera.*not (detected|found|enabled)|failed to (open|acquire) camera/i.test(stderr);
      finish({
        ok: false,
        failure: {
          code: noCamera ? 'camera_unavailable' : 'source_failed',
          message: `${command} ${sig ? `killed by ${sig}` : `exited with code ${code}`}${size === 0 && code === 0 ? ' without an image' : ''}${lastLine ? `: ${lastLine}` : ''}`,
        },
        fatal: false,
      });
    });
  });
}

type RaspistillModule = typeof import('node-raspistill');

function captureWithRaspistill(
  options: PiCameraSourceOptions,
  timeoutMs: number,
  signal: AbortSignal,
): Promise<CaptureResult> {
  const require = createRequire(import.meta.url);
  const { Raspistill } = require('node-raspistill') as RaspistillModule;
  const camera = new Raspistill({
    noFileSave: true,
    encoding: 'jpg',
    noPreview: true,
    time: options.settleMs ?? 1,
    ...(options.width ? { width: options.width } : {}),
    ...(options.height ? { height: options.height } : {}),
  });
  return new Promise((resolve) => {
    let settled = false;
    const finish = (result: CaptureResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const stopCamera = (): void => {
      try {
        camera.stop();
      } catch {
        // nothing was running
      }
    };
    // node-raspistill's promise never settles when `raspistill` cannot be spawned: only this fires.
    const timer = setTimeout(() => {
      stopCamera();
      finish({
        ok: false,
        failure: { code: 'source_timeout', message: `raspistill gave no image within ${timeoutMs} ms` },
        fatal: false,
      });
    }, timeoutMs);
    const onAbort = (): void => {
      stopCamera();
      finish({ ok: false, failure: { code: 'source_failed', message: 'aborted' }, fatal: false });
    };
    signal.addEventListener('abort', onAbort, { once: true });
    camera.takePhoto().then(
      (photo) => {
        if (photo && photo.length > 0) finish({ ok: true, jpeg: photo });
        else
          finish({
            ok: false,
            failure: { code: 'source_failed', message: 'raspistill returned no image' },
            fatal: false,
          });
      },
      (error: unknown) => {
        const message = describeError(error);
        finish({
          ok: false,
          failure: {
            code: /no cameras|camera.*not (detected|enabled)|mmal/i.test(message)
              ? 'camera_unavailable'
              : 'source_failed',
            message: `raspistill: ${message}`,
          },
          fatal: false,
        });
      },
    );
  });
}

export function createPiCameraSource(options: PiCameraSourceOptions = {}, deps: PiCameraSourceDeps = {}): FrameSource {
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? silentLogger).child({ component: 'pi-camera-source' });
  const backend = options.backend ?? 'rpicam';
  const command = backend === 'raspistill' ? 'raspistill' : (options.command ?? 'rpicam-still');
  const intervalMs = options.intervalMs ?? 1000;
  const timeoutMs = options.captureTimeoutMs ?? 10_000;
  const maxConsecutiveFailures = options.maxConsecutiveFailures ?? 5;
  let framesDelivered = 0;
  let failures = 0;
  let lastError: Failure | null = null;
  let buffer: Uint8Array = new Uint8Array(0);

  function rpicamArgs(): string[] {
    const args = ['-n', '-t', String(options.settleMs ?? 1), '-e', 'jpg', '-o', '-'];
    if (options.width) args.push('--width', String(options.width));
    if (options.height) args.push('--height', String(options.height));
    args.push(...(options.extraArgs ?? []));
    return args;
  }

  async function run(onFrame: FrameHandler, signal: AbortSignal): Promise<void> {
    const ffmpegPath = resolveFfmpegPath({ configured: options.ffmpegPath });
    let program = command;
    if (options.searchPath !== undefined) {
      const found = findOnPath(command, options.searchPath);
      if (!found) {
        const error = new VisionError(
          'camera_unavailable',
          backend === 'raspistill'
            ? 'raspistill not found on PATH (legacy camera stack); on current Raspberry Pi OS use the rpicam backend'
            : `${command} not found on PATH: install rpicam-apps or set the camera command`,
        );
        lastError = { code: error.code, message: error.message };
        throw error;
      }
      if (backend === 'rpicam') program = found;
    }
    let consecutiveFailures = 0;
    while (!signal.aborted) {
      const startedAt = performance.now();
      const result =
        backend === 'raspistill'
          ? await captureWithRaspistill(options, timeoutMs, signal)
          : await captureWithProgram(program, rpicamArgs(), timeoutMs, signal);
      if (signal.aborted) return;
      let failure: Failure | null = null;
      let fatal = false;
      if (result.ok) {
        try {
          const decoded = await decodeImage(
            { bytes: result.jpeg },
            { ffmpegPath, signal, target: buffer, timeoutMs: Math.max(1000, timeoutMs) },
          );
          if (decoded.data.buffer !== buffer.buffer) buffer = decoded.data;
          consecutiveFailures = 0;
          const frame = {
            data: decoded.data,
            width: decoded.width,
            height: decoded.height,
            index: framesDelivered,
            capturedAt: clock.now(),
            origin: `pi-camera:${backend}`,
          };
          framesDelivered++;
          await onFrame(frame);
        } catch (error) {
          if (signal.aborted) return;
          failure = {
            code: isVisionError(error) ? error.code : 'decode_failed',
            message: `camera image: ${describeError(error)}`,
          };
        }
      } else {
        failure = result.failure;
        fatal = result.fatal;
      }
      if (failure) {
        failures++;
        consecutiveFailures++;
        lastError = failure;
        const code = failure.code as VisionError['code'];
        if (fatal) throw new VisionError(code, failure.message);
        if (consecutiveFailures >= maxConsecutiveFailures) {
          throw new VisionError(code, `${failure.message} (${consecutiveFailures} failed captures in a row)`);
        }
        logger.warn({ code: failure.code, reason: failure.message, consecutiveFailures }, 'camera capture failed');
      }
      const wait = intervalMs - (performance.now() - startedAt);
      if (wait > 0 && !(await sleepUnlessAborted(wait, signal))) return;
    }
  }

  return {
    kind: 'pi-camera',
    description: `pi camera (${command})`,
    run,
    stats: (): SourceStats => ({ framesDelivered, restarts: 0, failures, lastError }),
  };
}
