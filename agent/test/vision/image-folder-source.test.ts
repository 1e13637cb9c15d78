import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createImageFolderSource } from '../../src/vision/image-folder-source.ts';
import { collectFrames, FFMPEG, ffmpeg, makeTempDir } from './test-media.ts';

const temp = makeTempDir('images');

beforeAll(async () => {
  await ffmpeg(['-f', 'lavfi', '-i', 'testsrc=size=64x48', '-frames:v', '1', path.join(temp.dir, 'a.png')]);
  await ffmpeg(['-f', 'lavfi', '-i', 'color=red:size=80x60', '-frames:v', '1', path.join(temp.dir, 'c.jpg')]);
  writeFileSync(path.join(temp.dir, 'b.jpg'), 'broken');
  writeFileSync(path.join(temp.dir, 'notes.txt'), 'not an image');
});

afterAll(() => temp.remove());

describe('image folder source', () => {
  it('decodes the images of a folder in name order, skipping and counting a broken one', async () => {
    const source = createImageFolderSource({ dir: temp.dir, ffmpegPath: FFMPEG });
    const frames = await collectFrames(source);
    expect(frames.map((f) => [f.width, f.height, f.index])).toEqual([
      [64, 48, 0],
      [80, 60, 1],
    ]);
    // The red JPEG decodes to (nearly) pure red.
    const red = frames[1]?.data as Uint8Array;
    expect(red[0]).toBeGreaterThan(240);
    expect(red[1]).toBeLessThan(15);
    expect(source.stats()).toMatchObject({ framesDelivered: 2, failures: 1, lastError: { code: 'decode_failed' } });
  });

  it('loops over the folder when asked', async () => {
    const frames = await collectFrames(createImageFolderSource({ dir: temp.dir, loop: true, ffmpegPath: FFMPEG }), 5);
    expect(frames.map((f) => f.width)).toEqual([64, 80, 64, 80, 64]);
  });

  it('fails with source_not_found for a missing folder or file', async () => {
    await expect(
      collectFrames(createImageFolderSource({ dir: path.join(temp.dir, 'nope'), ffmpegPath: FFMPEG })),
    ).rejects.toMatchObject({ code: 'source_not_found' });
    await expect(
      collectFrames(createImageFolderSource({ files: [path.join(temp.dir, 'nope.png')], ffmpegPath: FFMPEG })),
    ).rejects.toMatchObject({ code: 'source_not_found' });
  });
});
