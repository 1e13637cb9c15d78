import { describe, expect, it } from 'vitest';
import { classifyFfmpegFailure, createStderrLines, createStreamInfoParser, isNetworkInput } from './ffmpeg-process.ts';

const VTEST_STDERR = [
  "Input #0, avi, from 'test-media/video/vtest.avi':",
  '  Duration: 00:00:20.00, start: 0.000000, bitrate: 828 kb/s',
  '    Stream #0:0: Video: msmpeg4v3 (div3 / 0x33766964), yuv420p, 768x576, 816 kb/s, 10 fps, 10 tbr, 10 tbn, 10 tbc',
  'Stream mapping:',
  '  Stream #0:0 -> #0:0 (msmpeg4v3 (msmpeg4) -> rawvideo (native))',
  "Output #0, rawvideo, to 'pipe:1':",
  '    Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 384x288, q=2-31, 26542 kb/s, 10 fps, 10 tbn, 10 tbc',
];

describe('ffmpeg stream info', () => {
  it('reads the input size and fps and the raw output size from the stderr dump', () => {
    const parser = createStreamInfoParser();
    for (const line of VTEST_STDERR) parser.update(line.trim());
    expect(parser.info).toEqual({
      inputWidth: 768,
      inputHeight: 576,
      inputFps: 10,
      outputWidth: 384,
      outputHeight: 288,
      fullWidth: null,
      fullHeight: null,
    });
  });

  it('reads the second output of a split (scaled frames on pipe:1, full-resolution ones on pipe:3)', () => {
    const parser = createStreamInfoParser();
    const lines = [
      ...VTEST_STDERR.slice(0, 4),
      "Output #0, rawvideo, to 'pipe:1':",
      '    Stream #0:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 320x240, q=2-31, 18432 kb/s, 10 fps, 10 tbn, 10 tbc',
      "Output #1, rawvideo, to 'pipe:3':",
      '    Stream #1:0: Video: rawvideo (RGB[24] / 0x18424752), rgb24, 768x576, q=2-31, 106168 kb/s, 10 fps, 10 tbn, 10 tbc',
    ];
    for (const line of lines) parser.update(line.trim());
    expect(parser.info).toMatchObject({ outputWidth: 320, outputHeight: 240, fullWidth: 768, fullHeight: 576 });
  });

  it('splits stderr on \\n and \\r and keeps a bounded tail', () => {
    const seen: string[] = [];
    const lines = createStderrLines((l) => seen.push(l), 2);
    lines.push('a\nb\rc');
    lines.push('d\n');
    lines.push('e');
    lines.end();
    expect(seen).toEqual(['a', 'b', 'cd', 'e']);
    expect(lines.tail()).toEqual(['cd', 'e']);
  });
});

describe('classifyFfmpegFailure', () => {
  const base = { exitCode: 1, signal: null, network: false, source: 'x.avi' };

  it('gives up on a missing file with source_not_found', () => {
    expect(classifyFfmpegFailure({ ...base, lines: ['x.avi: No such file or directory'] })).toEqual({
      code: 'source_not_found',
      message: 'x.avi: No such file or directory',
      fatal: true,
    });
  });

  it('treats an HTTP 404 and an auth failure as fatal, a refused connection as retryable', () => {
    const net = { ...base, network: true, source: 'http://cam/x' };
    expect(classifyFfmpegFailure({ ...net, lines: ['http://cam/x: Server returned 404 Not Found'] })).toMatchObject({
      code: 'source_not_found',
      fatal: true,
    });
    expect(
      classifyFfmpegFailure({ ...net, lines: ['Server returned 401 Unauthorized (authorization failed)'] }),
    ).toMatchObject({
      code: 'source_unauthorized',
      fatal: true,
    });
    expect(
      classifyFfmpegFailure({ ...net, lines: ['Connection to tcp://cam:554 failed: Connection refused'] }),
    ).toMatchObject({
      code: 'source_failed',
      fatal: false,
    });
  });

  it('treats unreadable data as fatal for a file but not for a stream', () => {
    const lines = ['x: Invalid data found when processing input'];
    expect(classifyFfmpegFailure({ ...base, lines })).toMatchObject({ code: 'source_invalid', fatal: true });
    expect(classifyFfmpegFailure({ ...base, network: true, lines })).toMatchObject({
      code: 'source_invalid',
      fatal: false,
    });
  });

  it('reports a killed child as a retryable failure', () => {
    expect(classifyFfmpegFailure({ ...base, exitCode: null, signal: 'SIGKILL', lines: [] })).toMatchObject({
      code: 'source_failed',
      fatal: false,
      message: 'ffmpeg for x.avi was killed by SIGKILL',
    });
  });

  it('recognises network inputs', () => {
    expect(isNetworkInput('rtsp://cam/stream')).toBe(true);
    expect(isNetworkInput('https://cam/mjpeg')).toBe(true);
    expect(isNetworkInput('/dev/video0')).toBe(false);
    expect(isNetworkInput('clip.mp4')).toBe(false);
  });
});
