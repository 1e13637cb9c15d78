import type { CaptureFrameInput } from '@edgeloop/agent';

/*
 * Synthetic camera frames with known boxes for the simulated devices' hard-sample capture: a
 * grey scene with a "person" and a "car" moving across it, their boxes as the detections, and
 * scores drawn from the device's random stream (so near-threshold policies fire on a share of
 * frames). One RGB buffer per device, rewritten in place: the capture copies what it selects.
 */

export const SAMPLE_FRAME_LABELS = ['person', 'car'] as const;

export type SyntheticFrames = {
  /** The next frame (the same object and buffer each call, rewritten). */
  next(capturedAt: number, model: CaptureFrameInput['model']): CaptureFrameInput;
};

type Box = { x1: number; y1: number; x2: number; y2: number; score: number; classId: number; label: string };

export function createSyntheticFrames(options: {
  readonly width: number;
  readonly height: number;
  readonly random: () => number;
}): SyntheticFrames {
  const { width, height, random } = options;
  const data = new Uint8Array(width * height * 3);
  const boxes: Box[] = SAMPLE_FRAME_LABELS.map((label, classId) => ({
    x1: 0,
    y1: 0,
    x2: 0,
    y2: 0,
    score: 0,
    classId,
    label,
  }));
  const frame: CaptureFrameInput = {
    data,
    width,
    height,
    capturedAt: 0,
    detections: boxes,
    model: null,
    camera: null,
    shadow: null,
  };
  let index = 0;

  function fill(box: Box, rgb: readonly [number, number, number]) {
    for (let y = Math.floor(box.y1); y < Math.floor(box.y2); y++) {
      for (let x = Math.floor(box.x1); x < Math.floor(box.x2); x++) {
        const at = (y * width + x) * 3;
        data[at] = rgb[0];
        data[at + 1] = rgb[1];
        data[at + 2] = rgb[2];
      }
    }
  }

  return {
    next(capturedAt, model) {
      index++;
      // Background: a gradient whose phase moves every frame (no two frames share their bytes).
      for (let y = 0; y < height; y++) {
        const shade = 60 + ((y + index) % 64);
        for (let x = 0; x < width; x++) {
          const at = (y * width + x) * 3;
          data[at] = shade;
          data[at + 1] = shade;
          data[at + 2] = shade + 8;
        }
      }
      const step = index % width;
      const person = boxes[0] as Box;
      const pw = Math.max(4, Math.floor(width / 8));
      const ph = Math.max(8, Math.floor(height / 2));
      person.x1 = step % (width - pw);
      person.y1 = Math.floor(height / 4);
      person.x2 = person.x1 + pw;
      person.y2 = person.y1 + ph;
      person.score = 0.3 + random() * 0.65;
      const car = boxes[1] as Box;
      const cw = Math.max(8, Math.floor(width / 4));
      const ch = Math.max(4, Math.floor(height / 5));
      car.x1 = width - cw - ((2 * step) % (width - cw));
      car.y1 = height - ch - 2;
      car.x2 = car.x1 + cw;
      car.y2 = car.y1 + ch;
      car.score = 0.3 + random() * 0.65;
      fill(person, [200, 60, 50]);
      fill(car, [40, 90, 200]);
      frame.capturedAt = capturedAt;
      frame.model = model;
      return frame;
    },
  };
}
