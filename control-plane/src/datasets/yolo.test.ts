import { describe, expect, it } from 'vitest';
import { member, prediction, sampleMetadata } from '../../test/dataset-fixtures.ts';
import { createYoloWriter } from './yolo.ts';

describe('createYoloWriter', () => {
  it('writes one normalised `class cx cy w h` line per box, classes numbered from 0 as they come', () => {
    const writer = createYoloWriter({ labelled: false });
    const a = member(
      'a',
      sampleMetadata(new Uint8Array([1]), {
        width: 200,
        height: 100,
        predictions: [prediction([0, 0, 100, 50], 'text'), prediction([150, 50, 250, 150], 'logo')],
      }),
    );
    expect(writer.labelsOf(a)).toBe('0 0.250000 0.250000 0.500000 0.500000\n1 0.875000 0.750000 0.250000 0.500000\n');
    expect(writer.classNames()).toEqual(['text', 'logo']);
    expect(writer.dataYaml()).toContain('nc: 2');
    expect(writer.dataYaml()).toContain('  1: "logo"');
  });

  it('uses the fixed categories of a labelled version and its labels, not the predictions', () => {
    const writer = createYoloWriter({ labelled: true, categories: ['person', 'car'] });
    const labelled = member(
      'b',
      sampleMetadata(new Uint8Array([2]), { width: 100, height: 100, predictions: [prediction([0, 0, 9, 9], 'text')] }),
      { annotations: [{ box: [10, 10, 30, 50], label: 'car' }] },
    );
    expect(writer.labelsOf(labelled)).toBe('1 0.200000 0.300000 0.200000 0.400000\n');
    expect(writer.classNames()).toEqual(['person', 'car']);
  });

  it('writes an empty label file for an image without boxes', () => {
    const writer = createYoloWriter({ labelled: false });
    expect(writer.labelsOf(member('c', sampleMetadata(new Uint8Array([3]))))).toBe('');
  });
});
