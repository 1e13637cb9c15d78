import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildConstantOutputModel, sampleYoloBoxes, writeYoloTestModel } from '../../scripts/test-models.ts';
import { PPOCR_DET_MANIFEST_PATH, ppocrDetModelPath } from '../../src/vision/bundled-models.ts';
import { runDetectCli } from '../../src/vision/detect-cli.ts';
import { ffmpeg, lavfiClip, makeTempDir, REPO_ROOT, SCENETEXT01 } from './test-media.ts';

const temp = makeTempDir('detect-cli');
let yolo: { modelPath: string; manifestPath: string };
let whiteImage = '';
let clip = '';

function captureIo() {
  const out: string[] = [];
  const err: string[] = [];
  return {
    io: { stdout: { write: (t: string) => out.push(t) }, stderr: { write: (t: string) => err.push(t) } },
    lines: () =>
      out
        .join('')
        .trim()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    errors: () => err.join(''),
  };
}

beforeAll(async () => {
  yolo = writeYoloTestModel(temp.dir, {
    layout: 'yolov8',
    inputWidth: 640,
    inputHeight: 640,
    numClasses: 3,
    boxes: sampleYoloBoxes(),
    anchors: 100,
  });
  whiteImage = path.join(temp.dir, 'white.png');
  await ffmpeg(['-f', 'lavfi', '-i', 'color=white:size=960x540', '-frames:v', '1', whiteImage]);
  clip = await lavfiClip(path.join(temp.dir, 'clip.mp4'), 'color=white:size=960x540:rate=10', 0.5);
});

afterAll(() => temp.remove());

describe('detect CLI', () => {
  it('prints one JSON line per frame with boxes in source pixels, then a timing summary', async () => {
    const { io, lines, errors } = captureIo();
    const code = await runDetectCli(
      ['--model', yolo.modelPath, '--manifest', yolo.manifestPath, '--provider', 'cuda,cpu', whiteImage, clip],
      io,
    );
    expect(errors()).toBe('');
    expect(code).toBe(0);
    const out = lines();
    expect(out).toHaveLength(1 + 5 + 1);
    expect(out[0]).toEqual({
      file: whiteImage,
      frame: 0,
      boxes: [
        { x1: 225, y1: 120, x2: 375, y2: 420, score: 0.9, label: 'person' },
        { x1: 240, y1: 150, x2: 420, y2: 420, score: 0.8, label: 'car' },
        { x1: 660, y1: 195, x2: 780, y2: 285, score: 0.7, label: 'dog' },
      ],
      ms: expect.any(Number),
    });
    expect(out.slice(1, 6).map((l) => [l.file, l.frame])).toEqual([0, 1, 2, 3, 4].map((i) => [clip, i]));
    // The clip is white too (yuv420p rounding aside): same boxes.
    expect(out[3]?.boxes).toHaveLength(3);
    const summary = out[6] as { latencyMs: Record<string, unknown>; fps: number; provider: unknown };
    expect(summary).toMatchObject({
      summary: true,
      files: 2,
      failedFiles: 0,
      frames: 6,
      adapter: 'yolo',
      adapterGuessed: false,
    });
    expect(summary.provider).toMatchObject({
      requested: ['cuda', 'cpu'],
      active: 'cpu',
      fallbackReason: expect.stringContaining('cuda'),
    });
    for (const stage of ['preprocess', 'inference', 'postprocess', 'total']) {
      expect(summary.latencyMs[stage]).toEqual({ p50: expect.any(Number), p95: expect.any(Number) });
    }
    expect(summary.fps).toBeGreaterThan(0);
  });

  it('stops each video after --max-frames frames', async () => {
    const { io, lines } = captureIo();
    const code = await runDetectCli(
      ['--model', yolo.modelPath, '--manifest', yolo.manifestPath, '--provider', 'cpu', '--max-frames', '2', clip],
      io,
    );
    expect(code).toBe(0);
    expect(lines().map((l) => l.frame ?? 'summary')).toEqual([0, 1, 'summary']);
  });

  it('reports a missing file on stderr, runs the others and exits 1', async () => {
    const { io, lines, errors } = captureIo();
    const missing = path.join(temp.dir, 'missing.jpg');
    const code = await runDetectCli(
      ['--model', yolo.modelPath, '--manifest', yolo.manifestPath, missing, whiteImage],
      io,
    );
    expect(code).toBe(1);
    expect(JSON.parse(errors())).toEqual({
      file: missing,
      error: { code: 'source_not_found', message: expect.any(String) },
    });
    const out = lines();
    expect(out[0]).toMatchObject({ file: whiteImage, frame: 0 });
    expect(out.at(-1)).toMatchObject({ summary: true, files: 2, failedFiles: 1, frames: 1 });
  });

  it('exits 2 with the usage on bad arguments and with a clear message when the adapter cannot be guessed', async () => {
    const bad = captureIo();
    expect(await runDetectCli(['--threads', 'many', whiteImage], bad.io)).toBe(2);
    expect(bad.errors()).toContain('--model is required');
    expect(bad.errors()).toContain('--threads must be a whole number');
    expect(bad.errors()).toContain('usage: edgeloop-agent detect');

    const odd = path.join(temp.dir, 'odd.onnx');
    writeFileSync(
      odd,
      buildConstantOutputModel({
        inputShape: [1, 3, 8, 8],
        outputDims: [2, 2, 2, 2, 2],
        base: new Float32Array(32),
        gain: new Float32Array(32),
      }),
    );
    const unknown = captureIo();
    expect(await runDetectCli(['--model', odd, '--provider', 'cpu', whiteImage], unknown.io)).toBe(2);
    expect(JSON.parse(unknown.errors())).toMatchObject({
      error: { code: 'adapter_unknown', message: expect.stringContaining('--manifest') },
    });
  });

  it('runs as a child process through tsx with the PP-OCR model', async () => {
    const script = path.join(REPO_ROOT, 'agent/scripts/detect.ts');
    const { stdout } = await promisify(execFile)(
      process.execPath,
      [
        '--import',
        'tsx',
        script,
        '--model',
        ppocrDetModelPath(),
        '--manifest',
        PPOCR_DET_MANIFEST_PATH,
        '--provider',
        'cpu',
        SCENETEXT01,
      ],
      { cwd: REPO_ROOT },
    );
    const [frame, summary] = stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(frame.file).toBe(SCENETEXT01);
    expect(frame.boxes.filter((b: { y1: number }) => b.y1 < 300)).toHaveLength(5);
    expect(frame.boxes.every((b: { label: string }) => b.label === 'text')).toBe(true);
    expect(summary).toMatchObject({
      summary: true,
      frames: 1,
      adapter: 'db-text',
      model: { name: 'ppocr-det', version: '4.0.0' },
    });
  });
});
