import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { sceneLabels, verifySignature } from './closed-loop-trainer.ts';

describe('the stand-in trainer', () => {
  const secret = 'whsec-0123456789abcdef';
  const body = Buffer.from('{"event":"retraining.run","runId":"rt-1"}');
  const signed = `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

  it('accepts the HMAC-SHA256 of the raw body and refuses a changed body, another secret or a bare digest', () => {
    expect(verifySignature(secret, body, signed)).toBe(true);
    expect(verifySignature(secret, Buffer.from(body.toString().replace('rt-1', 'rt-2')), signed)).toBe(false);
    expect(verifySignature('another-secret-0000', body, signed)).toBe(false);
    expect(verifySignature(secret, body, signed.slice('sha256='.length))).toBe(false);
    expect(verifySignature(secret, body, `${signed}00`)).toBe(false);
    expect(verifySignature(secret, body, undefined)).toBe(false);
  });

  it('labels an image with the three boxes the test models encode, through the letterbox', () => {
    // The same boxes agent-eval.test.ts labels its 960x540 photos with by hand.
    expect(sceneLabels(960, 540)).toEqual([
      { label: 'person', bbox: [225, 120, 150, 300] },
      { label: 'car', bbox: [240, 150, 180, 270] },
      { label: 'dog', bbox: [660, 195, 120, 90] },
    ]);
    // A simulated 160x120 frame: scale 1, 20 rows of padding above.
    expect(sceneLabels(160, 120).map((box) => box.bbox)).toEqual([
      [37.5, 35, 25, 50],
      [40, 40, 30, 45],
      [110, 47.5, 20, 15],
    ]);
  });
});
