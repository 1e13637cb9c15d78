import type { DatasetSplit, SampleMetadata } from '@edgeloop/protocol';

/*
 * What the dataset writers read about each sample of a version: its id, split, metadata (as the
 * device sent it) and, for a labelled version, the imported boxes.
 */

/** One box in pixels of the stored image: x1, y1, x2, y2 and a class name. */
export type DatasetBox = {
  readonly box: readonly [number, number, number, number];
  readonly label: string;
  /** The model confidence, for pre-annotations; absent for imported labels. */
  readonly score?: number;
};

export type DatasetMember = {
  readonly sampleId: string;
  readonly split: DatasetSplit;
  readonly metadata: SampleMetadata;
  /** When the control plane stored the sample. */
  readonly receivedAt: number;
  /** Imported labels (labelled versions); null when the sample has none. */
  readonly annotations: readonly DatasetBox[] | null;
};

/** The boxes an export writes: the labels of a labelled version, else the model's predictions. */
export function boxesOf(member: DatasetMember, labelled: boolean): readonly DatasetBox[] {
  if (labelled) return member.annotations ?? [];
  return member.metadata.predictions.map((p) => ({ box: p.box, label: p.label, score: p.score }));
}

/** A box clamped into the image, or null when nothing of it is left inside. */
export function clampBox(
  box: readonly [number, number, number, number],
  width: number,
  height: number,
): [number, number, number, number] | null {
  const x1 = Math.min(Math.max(Math.min(box[0], box[2]), 0), width);
  const x2 = Math.min(Math.max(Math.max(box[0], box[2]), 0), width);
  const y1 = Math.min(Math.max(Math.min(box[1], box[3]), 0), height);
  const y2 = Math.min(Math.max(Math.max(box[1], box[3]), 0), height);
  if (!(x2 - x1 > 0) || !(y2 - y1 > 0)) return null;
  return [x1, y1, x2, y2];
}

/** The file name of a sample's image inside an export: content-addressed, so re-imports find it. */
export function imageFileName(member: DatasetMember): string {
  return `images/${member.metadata.image.sha256}.jpg`;
}

/** The provenance every exported sample carries. */
export function provenanceOf(member: DatasetMember) {
  const m = member.metadata;
  return {
    sample_id: member.sampleId,
    split: member.split,
    device_id: m.deviceId,
    site: m.site,
    model_id: m.model?.id ?? null,
    model_sha256: m.model?.sha256 ?? null,
    strategy: m.strategy,
    reason: m.reason,
    tags: m.tags,
    captured_at: new Date(m.frameTs).toISOString(),
    frame_ts: m.frameTs,
    boot_id: m.bootId,
    seq: m.seq,
    image_sha256: m.image.sha256,
  };
}
