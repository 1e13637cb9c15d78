import { createHash } from 'node:crypto';
import type { DatasetSplit, DatasetSplitRatios } from '@edgeloop/protocol';

/** 0..99 from sha256(sample id): the same id lands in the same bucket on every machine, forever. */
export function splitBucket(sampleId: string): number {
  return createHash('sha256').update(sampleId, 'utf8').digest().readUInt32BE(0) % 100;
}

/** The split of a sample: buckets [0, train) are train, then val, then test. */
export function splitOf(sampleId: string, ratios: DatasetSplitRatios): DatasetSplit {
  const bucket = splitBucket(sampleId);
  if (bucket < ratios.train) return 'train';
  if (bucket < ratios.train + ratios.val) return 'val';
  return 'test';
}
