import { type ChildProcess, spawn } from 'node:child_process';
import type { Failure } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import type { Logger } from '../logger.ts';
import { silentLogger } from '../logger.ts';
import {
  classifyFfmpegFailure,
  createStderrLines,
  createStreamInfoParser,
  type FfmpegFailure,
  isNetworkInput,
  resolveFfmpegPath,
} from './ffmpeg-process.ts';
import type { Frame, FrameHandler, FrameSource, SourceStats } from './frame-source.ts';
import { backoffDelay, sleepUnlessAborted } from './frame-source.ts';
import { VisionError } from './vision-error.ts';

/*
 * Frames from an ffmpeg child process: `ffmpeg [input options] -i URL -f rawvideo -pix_fmt rgb24 -`.
 * Reads files, RTSP, HTTP/MJPEG, V4L2 devices (`/dev/videoN`), or anything ffmpeg opens with `-f`.
 *
 * Frame size: `width`/`height` when given (ffmpeg scales), else the size ffmpeg reports for its
 * output (parsed from its stderr before the first frame). Frames are assembled from the pipe into
 * one reused buffer; the handler must copy what it keeps (the pipeline's queue does).
 *
 * Failures: ffmpeg's stderr is classified (see classifyFfmpegFailure). Fatal ones (missing file,
 * 404, bad URL, not a video) reject `run` at once with a VisionError. Others (connection lost,
 * killed child, stalled stream) restart ffmpeg after a capped exponential backoff, counted in
 * `stats().restarts`; the backoff resets once a restarted child delivers a frame. A local input
 * that fails `maxConsecutiveFailures` times in a row without a single frame is given up.
 * A non-looping file restarted mid-way continues from about where it stopped (`-ss`).
 *
 * Scaling for the model (`modelScale`, the vision service's default): ffmpeg delivers frames of
 * the model's input size (kept aspect for a letterbox), so the JS preprocess only normalises, and
 * marks them `scaledForModel`. With `fullFrames`, ffmpeg's filter graph splits the decoded
 * stream: `split -> scale -> pipe:1` for every frame and `split -> select (every Nth) -> pipe:3`
 * at full resolution (`-vsync passthrough`, so both outputs keep every frame they are given and
 * frame n of pipe:3 is frame n * N of pipe:1). Each Nth frame then carries `full`; the reader of
 * pipe:3 holds at most two full frames ahead and otherwise lets ffmpeg wait.
 */

export interface FfmpegRestartOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this many restarts in total; null: never (live streams). */
  maxRestarts?: number | null;
  /** Local inputs (files, devices): give up after this many failures in a row without a frame. */
  maxConsecutiveFailures?: number;
}

export interface FfmpegSourceOptions {
  /** A file path, `rtsp://`, `http(s)://` (MJPEG or any stream), `/dev/videoN`, or a lavfi graph with format 'lavfi'. */
  url: string;
  /** ffmpeg input format (`-f`); `v4l2` is chosen for /dev/video* by default. */
  format?: string | undefined;
  /** Extra ffmpeg options placed before `-i` (e.g. ['-input_format', 'mjpeg', '-video_size', '1280x720']). */
  inputOptions?: readonly string[] | undefined;
  /** Output size; ffmpeg scales. One side alone keeps the aspect ratio. Absent: the source size. */
  width?: number | undefined;
  height?: number | undefined;
  /**
   * Scale (after width/height) to the model's input: exactly width x height, or inside it with the
   * aspect kept (`keepAspect`, for a letterbox). Frames are then marked `scaledForModel`.
   */
  modelScale?: { width: number; height: number; keepAspect: boolean } | null | undefined;
  /** With modelScale: every `everyFrames`-th frame (from the first) also carries the unscaled frame (`frame.full`). */
  fullFrames?: { everyFrames: number } | null | undefined;
  /** Output frame rate (ffmpeg's fps filter drops or repeats frames). */
  fps?: number | undefined;
  /** Files: start again at the end (`-stream_loop -1`). */
  loop?: boolean | undefined;
  /** Read at the native frame rate (`-re`), like a camera; false: as fast as the consumer takes them. */
  realtime?: boolean | undefined;
  /** RTSP transport (default tcp: fewer broken frames than udp). */
  rtspTransport?: 'tcp' | 'udp' | undefined;
  restart?: FfmpegRestartOptions | undefined;
  /**
   * Kill and restart ffmpeg when it sends no bytes for this long (the consumer's backpressure
   * does not count). Default 15 s for network inputs and devices, none for files.
   */
  stallTimeoutMs?: number | null | undefined;
  /** The ffmpeg binary (see resolveFfmpegPath). */
  ffmpegPath?: string | undefined;
  /** Waiting for ffmpeg to report the frame size (when width/height are not both given). */
  probeTimeoutMs?: number | undefined;
}

export interface FfmpegSourceDeps {
  clock?: Clock;
  logger?: Logger;
}

export interface FfmpegSource extends FrameSource {
  readonly kind: 'ffmpeg';
  /** pid of the running ffmpeg child; null between children. For diagnostics and tests. */
  childPid(): number | null;
  /** The ffmpeg command line of the latest child (without the binary). */
  lastArgs(): readonly string[];
}

type InputKind = 'file' | 'network' | 'device' | 'other';

type ChildOutcome = ({ kind: 'ended' } | { kind: 'failed'; failure: FfmpegFailure } | { kind: 'aborted' }) & {
  /** Frames this child delivered. */
  frames: number;
  /** Input frame rate ffmpeg reported, if any. */
  inputFps: number | null;
};

const KILL_GRACE_MS = 2000;

export function createFfmpegSource(options: FfmpegSourceOptions, deps: FfmpegSourceDeps = {}): FfmpegSource {
  const clock = deps.clock ?? systemClock;
  const logger = (deps.logger ?? silentLogger).child({ component: 'ffmpeg-source' });
  const url = options.url;
  const inputKind: InputKind = isNetworkInput(url)
    ? 'network'
    : url.startsWith('/dev/video') || options.format === 'v4l2'
      ? 'device'
      : options.format
        ? 'other'
        : 'file';
  const format = options.format ?? (inputKind === 'device' ? 'v4l2' : undefined);
  const live = inputKind === 'network' || inputKind === 'device';
  const initialDelayMs = options.restart?.initialDelayMs ?? 500;
  const maxDelayMs = options.restart?.maxDelayMs ?? 30_000;
  const maxRestarts = options.restart?.maxRestarts ?? null;
  const maxConsecutiveFailures = options.restart?.maxConsecutiveFailures ?? 5;
  const stallTimeoutMs = options.stallTimeoutMs === undefined ? (live ? 15_000 : null) : options.stallTimeoutMs;
  const probeTimeoutMs = options.probeTimeoutMs ?? 20_000;

  let framesDelivered = 0;
  let restarts = 0;
  let failures = 0;
  let lastError: Failure | null = null;
  let child: ChildProcess | null = null;
  let args: string[] = [];
  let running = false;
  // Reused between children while the frame size stays the same.
  let buffer: Uint8Array = new Uint8Array(0);
  let fullBuffers: Uint8Array[] = [];
  const modelScale = options.modelScale ?? null;
  const everyFrames = modelScale && options.fullFrames ? Math.max(1, Math.floor(options.fullFrames.everyFrames)) : 0;
  const split = everyFrames > 0;
  // The delivered size is known up front only when ffmpeg is told it exactly.
  const fixedSize = modelScale
    ? modelScale.keepAspect
      ? null
      : { width: modelScale.width, height: modelScale.height }
    : options.width && options.height
      ? { width: options.width, height: options.height }
      : null;

  function buildArgs(seekSeconds: number): string[] {
    const out = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info'];
    if (options.realtime) out.push('-re');
    if (options.loop && inputKind === 'file') out.push('-stream_loop', '-1');
    if (seekSeconds > 0) out.push('-ss', seekSeconds.toFixed(3));
    if (inputKind === 'network' && /^rtsps?:/i.test(url)) out.push('-rtsp_transport', options.rtspTransport ?? 'tcp');
    if (format) out.push('-f', format);
    out.push(...(options.inputOptions ?? []));
    out.push('-i', url, '-an', '-sn', '-dn');
    const filters: string[] = [];
    if (options.fps) filters.push(`fps=${options.fps}`);
    if (options.width || options.height) {
      filters.push(`scale=${options.width ?? -2}:${options.height ?? -2}`);
    }
    const toModel = modelScale
      ? `scale=${modelScale.width}:${modelScale.height}:flags=bilinear${modelScale.keepAspect ? ':force_original_aspect_ratio=decrease' : ''}`
      : null;
    if (split && toModel) {
      const head = filters.length > 0 ? `${filters.join(',')},` : '';
      out.push(
        '-filter_complex',
        `[0:v]${head}split=2[m][f];[m]${toModel}[model];[f]select=not(mod(n\\,${everyFrames}))[full]`,
        '-vsync',
        'passthrough',
        '-map',
        '[model]',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        'pipe:1',
        '-map',
        '[full]',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        'pipe:3',
      );
      return out;
    }
    if (toModel) filters.push(toModel);
    if (filters.length > 0) out.push('-vf', filters.join(','));
    out.push('-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');
    return out;
  }

  async function runChild(
    ffmpegPath: string,
    seekSeconds: number,
    onFrame: FrameHandler,
    signal: AbortSignal,
  ): Promise<ChildOutcome> {
    args = buildArgs(seekSeconds);
    const proc = spawn(ffmpegPath, args, {
      stdio: split ? ['ignore', 'pipe', 'pipe', 'pipe'] : ['ignore', 'pipe', 'pipe'],
    });
    child = proc;
    let framesThisChild = 0;
    let spawnError: Error | null = null;
    let stalled = false;
    let consumerBusy = false;
    let lastDataAt = Date.now();

    const parser = createStreamInfoParser();
    let width = fixedSize?.width ?? 0;
    let height = fixedSize?.height ?? 0;
    let fullWidth = 0;
    let fullHeight = 0;
    const size: { resolve: () => void } = { resolve: () => {} };
    const sizeKnown = new Promise<void>((resolve) => {
      size.resolve = resolve;
    });
    const resolveSize = (): void => size.resolve();
    const sizesKnown = (): boolean => width > 0 && (!split || fullWidth > 0);
    if (sizesKnown()) resolveSize();
    const stderr = createStderrLines((line) => {
      if (!parser.update(line)) return;
      if (width === 0 && parser.info.outputWidth && parser.info.outputHeight) {
        width = parser.info.outputWidth;
        height = parser.info.outputHeight;
      }
      if (split && fullWidth === 0 && parser.info.fullWidth && parser.info.fullHeight) {
        fullWidth = parser.info.fullWidth;
        fullHeight = parser.info.fullHeight;
      }
      if (sizesKnown()) resolveSize();
    });
    proc.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      proc.on('close', (code, sig) => {
        stderr.end();
        resolveSize();
        resolve({ code, signal: sig });
      });
    });
    proc.on('error', (error) => {
      spawnError = error;
      resolveSize();
    });

    let killTimer: NodeJS.Timeout | null = null;
    const kill = (): void => {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      killTimer = setTimeout(() => proc.kill('SIGKILL'), KILL_GRACE_MS);
      killTimer.unref();
    };
    signal.addEventListener('abort', kill, { once: true });
    const watchdog =
      stallTimeoutMs === null
        ? null
        : setInterval(
            () => {
              if (!consumerBusy && Date.now() - lastDataAt > stallTimeoutMs) {
                stalled = true;
                proc.kill('SIGKILL');
              }
            },
            Math.max(50, Math.min(1000, stallTimeoutMs / 4)),
          );
    watchdog?.unref();
    const probeTimer = sizesKnown()
      ? null
      : setTimeout(() => {
          if (!sizesKnown()) proc.kill('SIGKILL');
        }, probeTimeoutMs);
    probeTimer?.unref();

    // Full-resolution frames from pipe:3 (split only): completed ones wait in `fullReady`, in order.
    const fullFrame: Frame & { data: Uint8Array; width: number; height: number; index: number; capturedAt: number } = {
      data: new Uint8Array(0),
      width: 0,
      height: 0,
      index: 0,
      capturedAt: 0,
      origin: url,
    };
    const fullReady: { index: number; data: Uint8Array }[] = [];
    const fullFree: Uint8Array[] = [];
    let fullEnded = !split;
    let closing = false;
    let wakeMain: (() => void) | null = null;
    let wakeFull: (() => void) | null = null;
    const notifyMain = (): void => {
      const w = wakeMain;
      wakeMain = null;
      w?.();
    };
    const notifyFull = (): void => {
      const w = wakeFull;
      wakeFull = null;
      w?.();
    };
    const onAbortWake = (): void => {
      notifyMain();
      notifyFull();
    };
    signal.addEventListener('abort', onAbortWake, { once: true });
    const readFull = async (): Promise<void> => {
      const stream = proc.stdio[3] as NodeJS.ReadableStream | null;
      if (!stream) return;
      try {
        await sizeKnown;
        if (fullWidth === 0) return;
        const bytes = fullWidth * fullHeight * 3;
        if (fullBuffers.length !== 2 || fullBuffers[0]?.length !== bytes) {
          fullBuffers = [new Uint8Array(bytes), new Uint8Array(bytes)];
        }
        fullFree.push(...fullBuffers);
        let current = fullFree.pop() as Uint8Array;
        let filled = 0;
        let count = 0;
        for await (const chunk of stream as AsyncIterable<Buffer>) {
          lastDataAt = Date.now();
          let offset = 0;
          while (offset < chunk.length) {
            const take = Math.min(chunk.length - offset, bytes - filled);
            current.set(chunk.subarray(offset, offset + take), filled);
            filled += take;
            offset += take;
            if (filled < bytes) continue;
            filled = 0;
            fullReady.push({ index: count * everyFrames, data: current });
            count++;
            notifyMain();
            // Both buffers hold frames the main stream has not reached: let ffmpeg wait.
            while (fullFree.length === 0 && !signal.aborted && !closing) {
              await new Promise<void>((resolve) => {
                wakeFull = resolve;
              });
            }
            if (signal.aborted || closing) return;
            current = fullFree.pop() as Uint8Array;
          }
        }
      } catch {
        // The child died: the main stream's outcome says why.
      } finally {
        fullEnded = true;
        notifyMain();
      }
    };
    const fullDone = split ? readFull() : Promise.resolve();

    /** The full frame of main frame `i` (waits for pipe:3 to deliver it), or undefined when none comes. */
    const takeFull = async (i: number): Promise<Uint8Array | undefined> => {
      for (;;) {
        while (fullReady.length > 0 && (fullReady[0] as { index: number }).index < i) {
          fullFree.push((fullReady.shift() as { data: Uint8Array }).data);
          notifyFull();
        }
        const head = fullReady[0];
        if (head && head.index === i) return head.data;
        if (head || fullEnded || signal.aborted) return undefined;
        await new Promise<void>((resolve) => {
          wakeMain = resolve;
        });
      }
    };

    let consumerError: unknown = null;
    try {
      let filled = 0;
      let frameBytes = width * height * 3;
      let localIndex = 0;
      const frame: {
        data: Uint8Array;
        width: number;
        height: number;
        index: number;
        capturedAt: number;
        origin: string;
        scaledForModel?: boolean;
        full?: Frame | undefined;
      } = { data: buffer, width, height, index: 0, capturedAt: 0, origin: url };
      if (modelScale) frame.scaledForModel = true;
      const ensureBuffer = (): void => {
        frameBytes = width * height * 3;
        if (buffer.length !== frameBytes) buffer = new Uint8Array(frameBytes);
        frame.data = buffer;
        frame.width = width;
        frame.height = height;
      };
      if (frameBytes > 0) ensureBuffer();
      for await (const chunk of proc.stdout as AsyncIterable<Buffer>) {
        lastDataAt = Date.now();
        if (frameBytes === 0) {
          await sizeKnown;
          if (!sizesKnown()) break;
          ensureBuffer();
        }
        let offset = 0;
        while (offset < chunk.length) {
          const take = Math.min(chunk.length - offset, frameBytes - filled);
          buffer.set(chunk.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === frameBytes) {
            filled = 0;
            frame.index = framesDelivered;
            frame.capturedAt = clock.now();
            let fullData: Uint8Array | undefined;
            if (split && localIndex % everyFrames === 0) {
              fullData = await takeFull(localIndex);
            }
            localIndex++;
            if (fullData) {
              fullFrame.data = fullData;
              fullFrame.width = fullWidth;
              fullFrame.height = fullHeight;
              fullFrame.index = frame.index;
              fullFrame.capturedAt = frame.capturedAt;
              frame.full = fullFrame;
            } else {
              frame.full = undefined;
            }
            framesDelivered++;
            framesThisChild++;
            const pending = onFrame(frame as Frame);
            if (pending) {
              consumerBusy = true;
              try {
                await pending;
              } finally {
                consumerBusy = false;
                lastDataAt = Date.now();
              }
            }
            if (fullData) {
              // The consumer is done with it: the buffer may take the next full frame.
              fullFree.push((fullReady.shift() as { data: Uint8Array }).data);
              frame.full = undefined;
              notifyFull();
            }
            if (signal.aborted) break;
          }
        }
        if (signal.aborted) break;
      }
    } catch (error) {
      consumerError = error;
    } finally {
      if (probeTimer) clearTimeout(probeTimer);
      if (watchdog) clearInterval(watchdog);
      signal.removeEventListener('abort', kill);
    }
    if (consumerError !== null || signal.aborted) kill();
    const exit = await closed;
    // pipe:3 ends with the child; a reader still parked for space is released.
    signal.removeEventListener('abort', onAbortWake);
    fullEnded = true;
    closing = true;
    if (split) {
      (proc.stdio[3] as (NodeJS.ReadableStream & { destroy?: () => void }) | null)?.destroy?.();
      notifyFull();
      await fullDone;
    }
    if (killTimer) clearTimeout(killTimer);
    child = null;
    if (consumerError !== null) throw consumerError;
    if (signal.aborted) return { kind: 'aborted', frames: framesThisChild, inputFps: parser.info.inputFps };
    if (spawnError) {
      return {
        kind: 'failed',
        frames: framesThisChild,
        inputFps: null,
        failure: {
          code: 'source_failed',
          message: `cannot run ffmpeg (${ffmpegPath}): ${(spawnError as Error).message}`,
          fatal: true,
        },
      };
    }
    if (stalled) {
      return {
        kind: 'failed',
        frames: framesThisChild,
        inputFps: parser.info.inputFps,
        failure: {
          code: 'source_timeout',
          message: `${url}: no data from ffmpeg for ${stallTimeoutMs} ms`,
          fatal: false,
        },
      };
    }
    if (width === 0) {
      const failure = classifyFfmpegFailure({
        lines: stderr.tail(),
        exitCode: exit.code,
        signal: exit.signal,
        network: inputKind === 'network',
        source: url,
      });
      if (exit.code === 0 || (exit.signal === 'SIGKILL' && failure.code === 'source_failed')) {
        return {
          kind: 'failed',
          frames: 0,
          inputFps: null,
          failure: {
            code: 'source_invalid',
            message: `${url}: ffmpeg produced no video frames${exit.signal ? ` (no frame size reported within ${probeTimeoutMs} ms)` : ''}`,
            fatal: exit.code === 0,
          },
        };
      }
      return { kind: 'failed', frames: 0, inputFps: null, failure };
    }
    if (exit.code === 0) return { kind: 'ended', frames: framesThisChild, inputFps: parser.info.inputFps };
    return {
      kind: 'failed',
      frames: framesThisChild,
      inputFps: parser.info.inputFps,
      failure: classifyFfmpegFailure({
        lines: stderr.tail(),
        exitCode: exit.code,
        signal: exit.signal,
        network: inputKind === 'network',
        source: url,
      }),
    };
  }

  async function run(onFrame: FrameHandler, signal: AbortSignal): Promise<void> {
    if (running) throw new Error('ffmpeg source is already running');
    running = true;
    try {
      const ffmpegPath = resolveFfmpegPath({ configured: options.ffmpegPath });
      let consecutiveFailures = 0;
      let consecutiveEmptyFailures = 0;
      // Frames of the current pass through a non-looping file, to continue after a restart.
      let positionFrames = 0;
      let inputFps: number | null = options.fps ?? null;
      while (!signal.aborted) {
        const seekSeconds =
          inputKind === 'file' && !options.loop && positionFrames > 0 && inputFps ? positionFrames / inputFps : 0;
        const outcome = await runChild(ffmpegPath, seekSeconds, onFrame, signal);
        positionFrames += outcome.frames;
        if (outcome.kind === 'aborted') return;
        if (!inputFps) inputFps = outcome.inputFps;
        let failure: FfmpegFailure;
        if (outcome.kind === 'ended') {
          if (!live && !options.loop) return;
          failure = { code: 'source_failed', message: `${url}: stream ended`, fatal: false };
        } else {
          failure = outcome.failure;
        }
        failures++;
        lastError = { code: failure.code, message: failure.message };
        if (failure.fatal) throw new VisionError(failure.code, failure.message);
        if (outcome.frames > 0) {
          consecutiveFailures = 0;
          consecutiveEmptyFailures = 0;
        } else {
          consecutiveEmptyFailures++;
        }
        if (!live && consecutiveEmptyFailures >= maxConsecutiveFailures) {
          throw new VisionError(
            failure.code,
            `${failure.message} (gave up after ${consecutiveEmptyFailures} failures in a row)`,
          );
        }
        if (maxRestarts !== null && restarts >= maxRestarts) {
          throw new VisionError(failure.code, `${failure.message} (gave up after ${restarts} restarts)`);
        }
        const delay = backoffDelay(consecutiveFailures, initialDelayMs, maxDelayMs);
        consecutiveFailures++;
        logger.warn({ source: url, code: failure.code, reason: failure.message, delayMs: delay }, 'restarting ffmpeg');
        if (!(await sleepUnlessAborted(delay, signal))) return;
        restarts++;
      }
    } finally {
      running = false;
    }
  }

  return {
    kind: 'ffmpeg',
    description: url,
    run,
    stats: (): SourceStats => ({ framesDelivered, restarts, failures, lastError }),
    childPid: () => child?.pid ?? null,
    lastArgs: () => [...args],
  };
}
