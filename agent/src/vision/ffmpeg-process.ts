import { accessSync, constants } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { VisionErrorCode } from './vision-error.ts';
import { VisionError } from './vision-error.ts';

/*
 * What every ffmpeg child needs: which binary, what its stderr says about the streams, and what
 * its stderr says when it fails.
 */

export interface FfmpegLocation {
  /** An explicit binary (config `vision.ffmpegPath`); used as is. */
  configured?: string | undefined;
  /** A PATH-style list of folders searched for `ffmpeg` (main.ts passes process.env.PATH). */
  searchPath?: string | undefined;
}

/**
 * The ffmpeg binary to run: the configured one, else `ffmpeg` found on `searchPath`, else the static
 * build shipped by the npm package `@ffmpeg-installer/ffmpeg`.
 */
export function resolveFfmpegPath(location: FfmpegLocation = {}): string {
  if (location.configured) return location.configured;
  if (location.searchPath) {
    for (const dir of location.searchPath.split(path.delimiter)) {
      if (!dir) continue;
      const candidate = path.join(dir, 'ffmpeg');
      try {
        accessSync(candidate, constants.X_OK);
        return candidate;
      } catch {
        // not here
      }
    }
  }
  return bundledFfmpegPath();
}

function bundledFfmpegPath(): string {
  const require = createRequire(import.meta.url);
  try {
    const installer = require('@ffmpeg-installer/ffmpeg') as { path: string };
    return installer.path;
  } catch (error) {
    throw new VisionError(
      'source_failed',
      'no ffmpeg: none on PATH, none configured (vision.ffmpegPath), and @ffmpeg-installer/ffmpeg has no binary for this platform',
      { cause: error },
    );
  }
}

/** Finds `name` on a PATH-style list; null when absent. */
export function findOnPath(name: string, searchPath: string | undefined): string | null {
  if (name.includes('/')) {
    try {
      accessSync(name, constants.X_OK);
      return name;
    } catch {
      return null;
    }
  }
  for (const dir of (searchPath ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Splits stderr chunks into lines (ffmpeg ends progress lines with \r), keeps the last `keep`
 * lines for error messages, and hands every line to `onLine` while it arrives.
 */
export interface StderrLines {
  push(chunk: Buffer | string): void;
  /** Flushes a trailing partial line. */
  end(): void;
  tail(): string[];
}

export function createStderrLines(onLine: (line: string) => void, keep = 40): StderrLines {
  const lines: string[] = [];
  let partial = '';
  const accept = (line: string): void => {
    const trimmed = line.trim();
    if (!trimmed) return;
    lines.push(trimmed);
    if (lines.length > keep) lines.shift();
    onLine(trimmed);
  };
  return {
    push(chunk) {
      const text = partial + chunk.toString();
      const parts = text.split(/\r\n|\n|\r/);
      partial = parts.pop() ?? '';
      // A runaway line without a newline must not grow without bound.
      if (partial.length > 8192) {
        accept(partial.slice(0, 8192));
        partial = '';
      }
      for (const part of parts) accept(part);
    },
    end() {
      if (partial) accept(partial);
      partial = '';
    },
    tail: () => [...lines],
  };
}

/** What ffmpeg's stderr dump says about the first input video stream and the raw output. */
export interface FfmpegStreamInfo {
  inputWidth: number | null;
  inputHeight: number | null;
  /** Frames per second of the input stream, when ffmpeg states it. */
  inputFps: number | null;
  outputWidth: number | null;
  outputHeight: number | null;
  /** The second output's size (the full-resolution frames of a scaling source's split), if any. */
  fullWidth: number | null;
  fullHeight: number | null;
}

const SIZE_PATTERN = /, (\d{1,5})x(\d{1,5})(?=[ ,[]|$)/;
const FPS_PATTERN = /, (\d+(?:\.\d+)?) fps/;

/**
 * Reads stream information from ffmpeg's `-loglevel info` dump, one line at a time.
 * `update` returns true when the line told something new.
 */
export function createStreamInfoParser(): { info: FfmpegStreamInfo; update(line: string): boolean } {
  const info: FfmpegStreamInfo = {
    inputWidth: null,
    inputHeight: null,
    inputFps: null,
    outputWidth: null,
    outputHeight: null,
    fullWidth: null,
    fullHeight: null,
  };
  let section: 'none' | 'input' | 'output' | 'second-output' = 'none';
  return {
    info,
    update(line) {
      if (/^Input #\d+/.test(line)) {
        section = 'input';
        return false;
      }
      const output = /^Output #(\d+)/.exec(line);
      if (output) {
        section = output[1] === '0' ? 'output' : output[1] === '1' ? 'second-output' : 'none';
        return false;
      }
      if (!/Stream #\d+:\d+.*: Video: /.test(line)) return false;
      const size = SIZE_PATTERN.exec(line);
      if (section === 'input' && info.inputWidth === null) {
        if (size) {
          info.inputWidth = Number(size[1]);
          info.inputHeight = Number(size[2]);
        }
        const fps = FPS_PATTERN.exec(line);
        if (fps) info.inputFps = Number(fps[1]);
        return true;
      }
      if (section === 'output' && info.outputWidth === null && size) {
        info.outputWidth = Number(size[1]);
        info.outputHeight = Number(size[2]);
        return true;
      }
      if (section === 'second-output' && info.fullWidth === null && size) {
        info.fullWidth = Number(size[1]);
        info.fullHeight = Number(size[2]);
        return true;
      }
      return false;
    },
  };
}

export interface FfmpegFailure {
  code: VisionErrorCode;
  message: string;
  /** True when starting ffmpeg again cannot help (missing file, bad URL, not a video). */
  fatal: boolean;
}

interface FailureRule {
  pattern: RegExp;
  code: VisionErrorCode;
  /** Fatal for local inputs (files, devices); network inputs may come back. */
  fatalLocal: boolean;
  fatalNetwork: boolean;
}

const FAILURE_RULES: readonly FailureRule[] = [
  { pattern: /No such file or directory/i, code: 'source_not_found', fatalLocal: true, fatalNetwork: true },
  {
    pattern: /404 Not Found|Server returned 404|method DESCRIBE failed: 404/i,
    code: 'source_not_found',
    fatalLocal: true,
    fatalNetwork: true,
  },
  {
    pattern: /401 Unauthorized|403 Forbidden|Server returned 40[13]|Permission denied/i,
    code: 'source_unauthorized',
    fatalLocal: true,
    fatalNetwork: true,
  },
  {
    pattern:
      /Protocol not found|Unknown input format|Invalid argument|does not contain any stream|Output file #0 does not contain/i,
    code: 'source_invalid',
    fatalLocal: true,
    fatalNetwork: true,
  },
  {
    pattern: /Invalid data found when processing input|could not find codec parameters|moov atom not found/i,
    code: 'source_invalid',
    fatalLocal: true,
    fatalNetwork: false,
  },
  {
    pattern:
      /Connection refused|Connection timed out|timed out|Network is unreachable|No route to host|Connection reset|End of file|Input\/output error|Broken pipe/i,
    code: 'source_failed',
    fatalLocal: false,
    fatalNetwork: false,
  },
  { pattern: /Device or resource busy/i, code: 'source_failed', fatalLocal: false, fatalNetwork: false },
];

/** Lines that only describe the streams; never the reason for a failure. */
const INFO_LINE =
  /^(Input #|Output #|Stream #|Stream mapping|Duration:|Metadata:|encoder\s*:|Press \[q\]|frame=|\w+\s*:\s)/;

/**
 * Explains why an ffmpeg child ended badly, from its stderr tail and exit status.
 * `network`: the input is a URL (rtsp/http/...), which may recover by itself.
 */
export function classifyFfmpegFailure(input: {
  lines: readonly string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  network: boolean;
  source: string;
}): FfmpegFailure {
  if (input.signal) {
    return {
      code: 'source_failed',
      message: `ffmpeg for ${input.source} was killed by ${input.signal}`,
      fatal: false,
    };
  }
  for (let i = input.lines.length - 1; i >= 0; i--) {
    const line = input.lines[i] ?? '';
    for (const rule of FAILURE_RULES) {
      if (rule.pattern.test(line)) {
        return {
          code: rule.code,
          message: line.includes(input.source) ? line : `${input.source}: ${line}`,
          fatal: input.network ? rule.fatalNetwork : rule.fatalLocal,
        };
      }
    }
  }
  const last = [...input.lines].reverse().find((line) => !INFO_LINE.test(line));
  return {
    code: 'source_failed',
    message: `ffmpeg for ${input.source} exited with code ${input.exitCode ?? 'unknown'}${last ? `: ${last}` : ''}`,
    fatal: false,
  };
}

/** True for inputs read over a network protocol (they may drop and come back). */
export function isNetworkInput(url: string): boolean {
  return /^(rtsps?|rtmps?|https?|udp|tcp|srt|rtp|mms):\/\//i.test(url);
}
