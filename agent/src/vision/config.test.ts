import { describe, expect, it } from 'vitest';
import { parseVisionConfig, resolveVisionPaths, VisionConfig } from './config.ts';

describe('vision config', () => {
  it('fills defaults and freezes the result', () => {
    const parsed = parseVisionConfig({ source: { kind: 'ffmpeg', url: 'rtsp://cam/stream' } });
    expect(parsed.ok).toBe(true);
    if (!parsed.ok) return;
    expect(parsed.value.providers).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(parsed.value.queue).toEqual({ capacity: 2, mode: 'drop-oldest' });
    expect(parsed.value.source).toMatchObject({
      realtime: true,
      loop: false,
      rtspTransport: 'tcp',
      scaleToModel: true,
    });
    expect(parsed.value.cameraHealth.enabled).toBe(true);
    expect(Object.isFrozen(parsed.value.source)).toBe(true);
  });

  it('lists every problem', () => {
    const parsed = parseVisionConfig({
      source: { kind: 'pi-camera', backend: 'v4l', intervalMs: -1 },
      providers: [],
      queue: { capacity: 0 },
    });
    expect(parsed.ok).toBe(false);
    if (parsed.ok) return;
    for (const field of ['source.backend', 'source.intervalMs', 'providers', 'queue.capacity']) {
      expect(parsed.error.message).toContain(`vision.${field}`);
    }
  });

  it('resolves relative file paths against the config folder and leaves URLs and devices alone', () => {
    const base = VisionConfig.parse({
      source: { kind: 'ffmpeg', url: 'clips/a.mp4' },
      model: { path: 'models/m.onnx', manifestPath: '/abs/m.json' },
    });
    const resolved = resolveVisionPaths(base, '/etc/edgeloop');
    expect(resolved.source).toMatchObject({ url: '/etc/edgeloop/clips/a.mp4' });
    expect(resolved.model).toEqual({ path: '/etc/edgeloop/models/m.onnx', manifestPath: '/abs/m.json' });
    const rtsp = resolveVisionPaths(VisionConfig.parse({ source: { kind: 'ffmpeg', url: 'rtsp://cam/s' } }), '/x');
    expect(rtsp.source).toMatchObject({ url: 'rtsp://cam/s' });
    const images = resolveVisionPaths(VisionConfig.parse({ source: { kind: 'images', dir: 'img' } }), '/x');
    expect(images.source).toMatchObject({ dir: '/x/img' });
  });
});
