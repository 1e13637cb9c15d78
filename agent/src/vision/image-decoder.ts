import { spawn } from 'node:child_process';
import { createStderrLines, createStreamInfoParser } from './ffmpeg-process.ts';
import { VisionError } from './vision-error.ts';

/*
 * Still images (JPEG, PNG, BMP, ...) decoded to RGB24 by the ffmpeg binary:
 *   ffmpeg -i FILE            -frames:v 1 -f rawvideo -pix_fmt rgb24 -
 *   ffmpeg -f image2pipe -i - -frames:v 1 -f rawvideo -pix_fmt rgb24 -   (bytes on stdin)
 * One child per image: fine for a camera capturing stills or a folder of images, not for video.
 */

export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface DecodeImageOptions {
  ffmpegPath: string;
  /** Kill ffmpeg and fail after this long (default 10 s). */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** A buffer to decode into when it is large enough (the result's data is then a view of it). */
  target?: Uint8Array;
}

export type ImageInput = { path: string } | { bytes: Uint8Array };

/** Decodes one image to RGB24. Fails with VisionError `source_not_found` or `decode_failed`. */
export function decodeImage(input: ImageInput, options: DecodeImageOptions): Promise<DecodedImage> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const what = 'path' in input ? input.path : `${input.bytes.length}-byte image`;
  const args = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info'];
  if ('path' in input) args.push('-i', input.path);
  else args.push('-f', 'image2pipe', '-i', 'pipe:0');
  args.push('-frames:v', '1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1');

  return new Promise<DecodedImage>((resolve, reject) => {
    if (options.signal?.aborted) {
      reject(new VisionError('decode_failed', `decoding ${what} was aborted`));
      return;
    }
    const proc = spawn(options.ffmpegPath, args, { stdio: ['path' in input ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    const parser = createStreamInfoParser();
    const stderr = createStderrLines((line) => parser.update(line));
    const chunks: Buffer[] = [];
    let received = 0;
    let timedOut = false;
    let spawnError: Error | null = null;
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill('SIGKILL');
    }, timeoutMs);
    const onAbort = (): void => {
      proc.kill('SIGKILL');
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    proc.stdout?.on('data', (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
    });
    proc.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk));
    proc.on('error', (error) => {
      spawnError = error;
    });
    if (!('path' in input) && proc.stdin) {
      // ffmpeg may exit before reading everything (bad data): ignore EPIPE, the exit explains.
      proc.stdin.on('error', () => {});
      proc.stdin.end(input.bytes);
    }
    proc.on('close', (code) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      stderr.end();
      const width = parser.info.outputWidth ?? 0;
      const height = parser.info.outputHeight ?? 0;
      const expected = width * height * 3;
      if (spawnError) {
        reject(new VisionError('decode_failed', `cannot run ffmpeg (${options.ffmpegPath}): ${spawnError.message}`));
        return;
      }
      if (timedOut) {
        reject(new VisionError('source_timeout', `decoding ${what} took longer than ${timeoutMs} ms`));
        return;
      }
      if (options.signal?.aborted) {
        reject(new VisionError('decode_failed', `decoding ${what} was aborted`));
        return;
      }
      if (code !== 0 || expected === 0 || received < expected) {
        const tail = stderr.tail();
        const notFound = tail.find((line) => /No such file or directory/i.test(line));
        if (notFound) {
          reject(new VisionError('source_not_found', `${what}: no such file`));
          return;
        }
        const reason = [...tail]
          .reverse()
          .find((line) => !/^(Input #|Output #|Stream|Duration|Metadata|\w+\s*:)/.test(line));
        reject(
          new VisionError(
            'decode_failed',
            `cannot decode ${what}${reason ? `: ${reason}` : ` (ffmpeg exit code ${code ?? 'unknown'})`}`,
          ),
        );
        return;
      }
      const data =
        options.target && options.target.length >= expected
          ? options.target.subarray(0, expected)
          : new Uint8Array(expected);
      let offset = 0;
      for (const chunk of chunks) {
        const take = Math.min(chunk.length, expected - offset);
        data.set(chunk.subarray(0, take), offset);
        offset += take;
        if (offset >= expected) break;
      }
      resolve({ data, width, height });
    });
  });
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff', '.pgm', '.ppm']);

/** True for file names the image sources and the detect CLI treat as still images. */
export function isImageFile(fileName: string): boolean {
  const dot = fileName.lastIndexOf('.');
  return dot >= 0 && IMAGE_EXTENSIONS.has(fileName.slice(dot).toLowerCase());
}
