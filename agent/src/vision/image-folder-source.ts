import { readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Failure } from '@edgeloop/protocol';
import type { Clock } from '../clock.ts';
import { systemClock } from '../clock.ts';
import { resolveFfmpegPath } from './ffmpeg-process.ts';
import type { FrameHandler, FrameSource, SourceStats } from './frame-source.ts';
import { sleepUnlessAborted } from './frame-source.ts';
import { decodeImage, isImageFile } from './image-decoder.ts';
import { describeError, isVisionError, VISION_ERROR_CODES, VisionError } from './vision-error.ts';

/*
 * Still images as frames: every image file of a folder (sorted by name, listed again on each pass
 * so new files join), or an explicit list of files. Each image is decoded by ffmpeg into one
 * reused buffer (grown when an image is larger). An image that fails to decode is skipped and
 * counted (stats().failures); a pass in which no image decodes fails with `decode_failed`.
 */

export interface ImageFolderSourceOptions {
  /** A folder of images (jpg, jpeg, png, bmp, webp, tif, pgm, ppm). */
  dir?: string | undefined;
  /** Or these files, in this order. */
  files?: readonly string[] | undefined;
  /** Start again after the last image. */
  loop?: boolean | undefined;
  /** Wait between images (0: as fast as the consumer takes them). */
  intervalMs?: number | undefined;
  ffmpegPath?: string | undefined;
  decodeTimeoutMs?: number | undefined;
}

export interface ImageFolderSourceDeps {
  clock?: Clock;
}

export function createImageFolderSource(
  options: ImageFolderSourceOptions,
  deps: ImageFolderSourceDeps = {},
): FrameSource {
  const clock = deps.clock ?? systemClock;
  if (!options.dir && !options.files) throw new VisionError('source_invalid', 'image source needs dir or files');
  const description = options.dir ?? `${options.files?.length ?? 0} image files`;
  let framesDelivered = 0;
  let failures = 0;
  let lastError: Failure | null = null;
  let buffer: Uint8Array = new Uint8Array(0);

  async function listFiles(): Promise<string[]> {
    if (options.files) return [...options.files];
    const dir = options.dir as string;
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      throw new VisionError(
        code === 'ENOENT' ? 'source_not_found' : code === 'EACCES' ? 'source_unauthorized' : 'source_invalid',
        `image folder ${dir}: ${describeError(error)}`,
        { cause: error },
      );
    }
    return names
      .filter(isImageFile)
      .sort()
      .map((name) => path.join(dir, name));
  }

  async function run(onFrame: FrameHandler, signal: AbortSignal): Promise<void> {
    const ffmpegPath = resolveFfmpegPath({ configured: options.ffmpegPath });
    const intervalMs = options.intervalMs ?? 0;
    do {
      const files = await listFiles();
      if (files.length === 0) throw new VisionError('source_invalid', `no images in ${description}`);
      let deliveredThisPass = 0;
      for (const file of files) {
        if (signal.aborted) return;
        let decoded: { data: Uint8Array; width: number; height: number };
        try {
          decoded = await decodeImage(
            { path: file },
            { ffmpegPath, signal, target: buffer, timeoutMs: options.decodeTimeoutMs ?? 10_000 },
          );
        } catch (error) {
          if (signal.aborted) return;
          failures++;
          lastError = {
            code: isVisionError(error) ? error.code : 'decode_failed',
            message: describeError(error),
          };
          continue;
        }
        if (decoded.data.buffer !== buffer.buffer) buffer = decoded.data;
        const frame = {
          data: decoded.data,
          width: decoded.width,
          height: decoded.height,
          index: framesDelivered,
          capturedAt: clock.now(),
          origin: file,
        };
        framesDelivered++;
        deliveredThisPass++;
        await onFrame(frame);
        if (intervalMs > 0 && !(await sleepUnlessAborted(intervalMs, signal))) return;
      }
      if (deliveredThisPass === 0) {
        const failed = lastError as Failure | null;
        const code = VISION_ERROR_CODES.find((c) => c === failed?.code) ?? 'decode_failed';
        throw new VisionError(
          code,
          files.length === 1
            ? (failed?.message ?? 'cannot decode')
            : `no image in ${description} could be decoded: ${failed?.message ?? ''}`,
        );
      }
    } while (options.loop && !signal.aborted);
  }

  return {
    kind: 'images',
    description,
    run,
    stats: (): SourceStats => ({ framesDelivered, restarts: 0, failures, lastError }),
  };
}
