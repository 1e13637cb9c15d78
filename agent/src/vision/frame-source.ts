import type { Failure } from '@edgeloop/protocol';

/**
 * One decoded video frame: packed RGB24, row-major, `width * height * 3` bytes.
 *
 * Lifetime: a frame handed to a `FrameHandler` (or to a pipeline sink) is a view of a buffer that
 * its owner reuses. It is valid only until the handler returns (or, if the handler returns a
 * promise, until that promise settles). Copy `data` to keep it.
 */
export interface Frame {
  readonly data: Uint8Array;
  readonly width: number;
  readonly height: number;
  /** Index of the frame in this source's output, counting from 0 across restarts and loops. */
  readonly index: number;
  /** Epoch ms (source clock) when the source received the frame. */
  readonly capturedAt: number;
  /** Where the frame came from (file path, URL, camera), for people. */
  readonly origin: string;
  /**
   * True when the source shrank this frame to the model's input size (ffmpeg's `modelScale`):
   * it is not the camera's resolution, and sinks that need that (hard samples) use `full`.
   */
  readonly scaledForModel?: boolean | undefined;
  /**
   * The same moment at full resolution, on the frames that carry one (every Nth frame of a
   * source scaled for the model, when a sink asked for them). Same lifetime as `data`.
   */
  readonly full?: Frame | undefined;
}

/**
 * Receives each frame. Returning a promise applies backpressure: the source reads no further
 * frame until it settles (a file is then read at the consumer's pace; a live source buffers in
 * ffmpeg/the network and the pipeline's queue drops the oldest frames instead).
 */
export type FrameHandler = (frame: Frame) => void | Promise<void>;

export type FrameSourceKind = 'ffmpeg' | 'pi-camera' | 'images' | 'synthetic';

export interface SourceStats {
  /** Frames handed to the handler so far. */
  readonly framesDelivered: number;
  /** Times a dead stream (or child process) was started again. */
  readonly restarts: number;
  /** Captures or decodes that failed and were skipped (pi camera, image folder). */
  readonly failures: number;
  /** The latest failure, restarted from or not; null when none. */
  readonly lastError: Failure | null;
}

/**
 * Every frame source: ffmpeg (files, RTSP, HTTP/MJPEG, V4L2), the Raspberry Pi camera, a folder
 * of images, synthetic frames.
 *
 * `run` delivers frames until the source ends (resolves), fails for good (rejects with a
 * `VisionError` whose `code` says why) or `signal` aborts (resolves). A source runs once at a time;
 * calling `run` again after it settled starts it again.
 */
export interface FrameSource {
  readonly kind: FrameSourceKind;
  /** For logs and the CLI: the file, URL or camera. */
  readonly description: string;
  run(onFrame: FrameHandler, signal: AbortSignal): Promise<void>;
  stats(): SourceStats;
}

/** Waits `ms`, or less when `signal` aborts first. Resolves true when the full time passed. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (ms <= 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const onAbort = (): void => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Capped exponential backoff: initial * 2^attempt, at most max. `attempt` counts from 0. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number): number {
  const delay = initialMs * 2 ** Math.min(attempt, 30);
  return Math.min(delay, maxMs);
}
