/*
 * Classification metrics: top-1 accuracy over the images that have a label, and per class the
 * one-vs-rest precision (of the images predicted as the class, the share that are) and recall (of
 * the images that are the class, the share predicted so). An image the model gave no class to
 * (every score under its threshold) counts as wrong.
 */

export type ClassifiedImage = {
  readonly id: string;
  /** The labelled class. */
  readonly truth: string;
  /** The model's top-1 class; null when it gave none. */
  readonly predicted: string | null;
};

export type ClassClassificationMetrics = {
  readonly category: string;
  /** Images labelled with the class. */
  readonly support: number;
  /** Images the model put in the class. */
  readonly predicted: number;
  readonly correct: number;
  /** null when the model never predicted the class. */
  readonly precision: number | null;
  /** null when no image is labelled with the class. */
  readonly recall: number | null;
};

export type ClassificationMetrics = {
  readonly images: number;
  /** Correct top-1 predictions over images; null for an empty set. */
  readonly accuracy: number | null;
  readonly classes: readonly ClassClassificationMetrics[];
};

export function evaluateClassification(images: readonly ClassifiedImage[]): ClassificationMetrics {
  const counts = new Map<string, { support: number; predicted: number; correct: number }>();
  const of = (category: string) => {
    let entry = counts.get(category);
    if (!entry) {
      entry = { support: 0, predicted: 0, correct: 0 };
      counts.set(category, entry);
    }
    return entry;
  };
  let correct = 0;
  for (const image of images) {
    of(image.truth).support++;
    if (image.predicted === null) continue;
    of(image.predicted).predicted++;
    if (image.predicted === image.truth) {
      correct++;
      of(image.truth).correct++;
    }
  }
  return {
    images: images.length,
    accuracy: images.length === 0 ? null : correct / images.length,
    classes: [...counts].map(([category, c]) => ({
      category,
      ...c,
      precision: c.predicted === 0 ? null : c.correct / c.predicted,
      recall: c.support === 0 ? null : c.correct / c.support,
    })),
  };
}
