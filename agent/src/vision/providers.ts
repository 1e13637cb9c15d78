/**
 * Execution providers the vision pipeline asks onnxruntime for, most preferred first. Kept apart
 * from inference.ts so the config schema can name the default without loading onnxruntime.
 */
export const DEFAULT_PROVIDERS: readonly string[] = ['tensorrt', 'cuda', 'cpu'];
