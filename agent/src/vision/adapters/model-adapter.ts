import type { ModelManifest } from '@edgeloop/protocol';
import type { ModelAdapter, ModelInput } from './adapter-types.ts';
import { createClassificationAdapter } from './classification-adapter.ts';
import { createDbTextAdapter } from './db-text-adapter.ts';
import { createYoloAdapter } from './yolo-adapter.ts';

/** The adapter the manifest names, for a model input resolved by resolveModelInput. */
export function createModelAdapter(manifest: ModelManifest, input: ModelInput, outputName?: string): ModelAdapter {
  switch (manifest.adapter) {
    case 'yolo':
      return createYoloAdapter({ manifest, input, outputName });
    case 'db-text':
      return createDbTextAdapter({ manifest, input, outputName });
    case 'classification':
      return createClassificationAdapter({ manifest, input, outputName });
  }
}
